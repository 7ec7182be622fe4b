import NIOCore

/// One information item carried by an `NBD_REP_INFO` option reply.
///
/// proto.md, "Option reply types" → `NBD_REP_INFO`: 16 bits information type,
/// then *length − 2* bytes of payload:
/// - `NBD_INFO_EXPORT` (length 12): 64 bits size, 16 bits transmission flags;
/// - `NBD_INFO_NAME` / `NBD_INFO_DESCRIPTION` (length ≥ 2): a string;
/// - `NBD_INFO_BLOCK_SIZE` (length 14): 32 bits minimum, preferred, maximum.
public enum NBDInfo: Hashable, Sendable {
    case export(size: UInt64, flags: NBDTransmissionFlags)
    case name(String)
    case description(String)
    /// Raw values as on the wire (a client may receive values that would not pass
    /// ``NBDBlockSizeConstraints``'s validation).
    case blockSize(minimum: UInt32, preferred: UInt32, maximum: UInt32)
    case unknown(NBDInfoType, payload: ByteBuffer)

    /// The information type of this item.
    public var type: NBDInfoType {
        switch self {
        case .export: .export
        case .name: .name
        case .description: .description
        case .blockSize: .blockSize
        case .unknown(let type, _): type
        }
    }

    /// The `NBD_INFO_BLOCK_SIZE` item for `constraints`.
    public static func blockSize(_ constraints: NBDBlockSizeConstraints) -> NBDInfo {
        .blockSize(minimum: constraints.minimum, preferred: constraints.preferred, maximum: constraints.maximum)
    }
}

extension ByteBuffer {
    /// Writes the data of an `NBD_REP_INFO` reply (type then payload).
    @discardableResult
    public mutating func writeNBDInfo(_ info: NBDInfo) -> Int {
        var written = self.writeInteger(info.type.rawValue)
        switch info {
        case .export(let size, let flags):
            written += self.writeMultipleIntegers(size, flags.rawValue)
        case .name(let string), .description(let string):
            written += self.writeString(string)
        case .blockSize(let minimum, let preferred, let maximum):
            written += self.writeMultipleIntegers(minimum, preferred, maximum)
        case .unknown(_, let payload):
            written += self.writeImmutableBuffer(payload)
        }
        return written
    }

    /// Reads the whole readable region as the data of an `NBD_REP_INFO` reply;
    /// returns `nil` if its length does not fit the information type.
    public mutating func readNBDInfo() -> NBDInfo? {
        guard let rawType = self.readInteger(as: UInt16.self) else { return nil }
        let type = NBDInfoType(rawValue: rawType)
        switch type {
        case .export:
            guard self.readableBytes == 10, let (size, flags) = self.readMultipleIntegers(as: (UInt64, UInt16).self)
            else { return nil }
            return .export(size: size, flags: NBDTransmissionFlags(rawValue: flags))
        case .name:
            return .name(self.readString(length: self.readableBytes)!)
        case .description:
            return .description(self.readString(length: self.readableBytes)!)
        case .blockSize:
            guard self.readableBytes == 12,
                let (minimum, preferred, maximum) = self.readMultipleIntegers(as: (UInt32, UInt32, UInt32).self)
            else { return nil }
            return .blockSize(minimum: minimum, preferred: preferred, maximum: maximum)
        default:
            return .unknown(type, payload: self.readSlice(length: self.readableBytes)!)
        }
    }
}
