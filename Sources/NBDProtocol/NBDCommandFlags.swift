/// The 16-bit command flags of a transmission-phase request.
///
/// proto.md, "Values" → "Transmission phase" → "Command flags". Which flags are
/// valid depends on the command and on negotiation; the server SHOULD answer
/// an unknown or inapplicable flag with `NBD_EINVAL`.
public struct NBDCommandFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Bit 0, `NBD_CMD_FLAG_FUA`.
    public static let fua = NBDCommandFlags(rawValue: 1 << 0)
    /// Bit 1, `NBD_CMD_FLAG_NO_HOLE` (`NBD_CMD_WRITE_ZEROES`).
    public static let noHole = NBDCommandFlags(rawValue: 1 << 1)
    /// Bit 2, `NBD_CMD_FLAG_DF` (`NBD_CMD_READ` with structured replies).
    public static let dontFragment = NBDCommandFlags(rawValue: 1 << 2)
    /// Bit 3, `NBD_CMD_FLAG_REQ_ONE` (`NBD_CMD_BLOCK_STATUS`).
    public static let requestOne = NBDCommandFlags(rawValue: 1 << 3)
    /// Bit 4, `NBD_CMD_FLAG_FAST_ZERO` (`NBD_CMD_WRITE_ZEROES`).
    public static let fastZero = NBDCommandFlags(rawValue: 1 << 4)
    /// Bit 5, `NBD_CMD_FLAG_PAYLOAD_LEN`: only valid with extended headers,
    /// which this implementation does not negotiate (see ``NBDRequestDecoder``).
    public static let payloadLength = NBDCommandFlags(rawValue: 1 << 5)
}
