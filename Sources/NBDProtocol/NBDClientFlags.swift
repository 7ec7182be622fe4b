/// The 32-bit client flags a client sends after the server greeting.
///
/// proto.md, "Values" → "Client flags". A server MUST drop the connection on
/// an unknown flag or on a flag it did not advertise.
public struct NBDClientFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Bit 0, `NBD_FLAG_C_FIXED_NEWSTYLE`.
    public static let fixedNewstyle = NBDClientFlags(rawValue: 1 << 0)
    /// Bit 1, `NBD_FLAG_C_NO_ZEROES`: the server MUST NOT send the 124 zero bytes after `NBD_OPT_EXPORT_NAME`.
    public static let noZeroes = NBDClientFlags(rawValue: 1 << 1)

    /// Every flag this implementation knows.
    public static let known: NBDClientFlags = [.fixedNewstyle, .noZeroes]
}
