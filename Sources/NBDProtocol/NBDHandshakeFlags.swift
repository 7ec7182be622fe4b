/// The 16-bit handshake flags the server sends in its greeting.
///
/// proto.md, "Values" → "Handshake flags".
public struct NBDHandshakeFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Bit 0, `NBD_FLAG_FIXED_NEWSTYLE`: the server speaks fixed newstyle.
    public static let fixedNewstyle = NBDHandshakeFlags(rawValue: 1 << 0)
    /// Bit 1, `NBD_FLAG_NO_ZEROES`: the server may omit the 124 zero bytes after `NBD_OPT_EXPORT_NAME`.
    public static let noZeroes = NBDHandshakeFlags(rawValue: 1 << 1)
}
