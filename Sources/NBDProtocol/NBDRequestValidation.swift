/// What a request is checked against before anything is done for it: the
/// export's size and mode and what the handshake negotiated.
public struct NBDRequestLimits: Hashable, Sendable {
    public var exportSize: UInt64
    public var readOnly: Bool
    public var structuredReplies: Bool
    /// Whether `base:allocation` was negotiated (`NBD_CMD_BLOCK_STATUS` needs it).
    public var metaContextNegotiated: Bool
    /// The largest read (and write payload) accepted, in bytes.
    public var maximumPayload: Int

    public init(
        exportSize: UInt64, readOnly: Bool, structuredReplies: Bool, metaContextNegotiated: Bool,
        maximumPayload: Int
    ) {
        self.exportSize = exportSize
        self.readOnly = readOnly
        self.structuredReplies = structuredReplies
        self.metaContextNegotiated = metaContextNegotiated
        self.maximumPayload = maximumPayload
    }
}

/// Why a request is refused before any work: the errno to answer and a message.
public struct NBDRequestRejection: Error, Hashable, Sendable, CustomStringConvertible {
    public var errno: NBDErrno
    public var message: String

    public init(_ errno: NBDErrno, _ message: String) {
        self.errno = errno
        self.message = message
    }

    public var description: String { "\(errno): \(message)" }
}

/// Request validation as a pure function, as nbdkit's `validate_request`
/// (server/protocol.c): proto.md "Request types", "Flag values" and "Error
/// values" — unknown commands and flags are `EINVAL`, flags not valid for the
/// command `EINVAL`, `DF` without structured replies `EINVAL`, mutating commands
/// on a read-only export `EPERM`, a range past the end `EINVAL` (`ENOSPC` for
/// writes), a read over the maximum payload `EOVERFLOW` with structured replies
/// (`EINVAL` without), block status of length 0 or without a negotiated context
/// `EINVAL`.
public enum NBDRequestValidation {
    /// Every flag this server understands.
    public static let knownFlags: NBDCommandFlags = [.fua, .noHole, .dontFragment, .requestOne, .fastZero]

    /// `nil` when the request is acceptable.
    public static func validate(_ r: NBDRequest, _ limits: NBDRequestLimits) -> NBDRequestRejection? {
        guard r.flags.isSubset(of: knownFlags) else {
            return NBDRequestRejection(.einval, "unknown command flags 0x\(String(r.flags.rawValue, radix: 16))")
        }
        var allowed: NBDCommandFlags = [.fua]
        switch r.type {
        case .read: allowed.insert(.dontFragment)
        case .writeZeroes: allowed.formUnion([.noHole, .fastZero])
        case .blockStatus: allowed.insert(.requestOne)
        case .write, .flush, .trim, .cache: break
        default: return NBDRequestRejection(.einval, "unknown command \(r.type.rawValue)")
        }
        guard r.flags.isSubset(of: allowed) else {
            return NBDRequestRejection(
                .einval, "flags 0x\(String(r.flags.rawValue, radix: 16)) are not valid for this command")
        }
        if r.flags.contains(.dontFragment) && !limits.structuredReplies {
            return NBDRequestRejection(.einval, "NBD_CMD_FLAG_DF without structured replies")
        }
        let mutating = r.type == .write || r.type == .trim || r.type == .writeZeroes
        if mutating && limits.readOnly {
            return NBDRequestRejection(.eperm, "export is read-only")
        }
        let (end, overflow) = r.offset.addingReportingOverflow(UInt64(r.length))
        if overflow || end > limits.exportSize {
            let write = r.type == .write || r.type == .writeZeroes
            return NBDRequestRejection(
                write ? .enospc : .einval,
                "range \(r.offset)+\(r.length) is beyond the export size \(limits.exportSize)")
        }
        switch r.type {
        case .read where Int(r.length) > limits.maximumPayload:
            return NBDRequestRejection(
                limits.structuredReplies ? .eoverflow : .einval,
                "read of \(r.length) bytes exceeds the maximum payload \(limits.maximumPayload)")
        case .blockStatus where r.length == 0:
            return NBDRequestRejection(.einval, "block status of length 0")
        case .blockStatus where !limits.metaContextNegotiated:
            return NBDRequestRejection(
                .einval, "no metadata context negotiated (NBD_OPT_SET_META_CONTEXT base:allocation)")
        default:
            return nil
        }
    }
}
