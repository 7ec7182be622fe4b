/// The 16-bit transmission flags describing an export.
///
/// proto.md, "Values" → "Transmission flags". `NBD_FLAG_HAS_FLAGS` MUST always
/// be set; `NBD_FLAG_SEND_DF` MUST be clear unless structured replies were
/// negotiated; `NBD_FLAG_SEND_FAST_ZERO` MUST be clear without
/// `NBD_FLAG_SEND_WRITE_ZEROES`. ``NBDServerHandshake`` enforces these rules
/// on what it advertises.
public struct NBDTransmissionFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Bit 0, `NBD_FLAG_HAS_FLAGS`: always 1.
    public static let hasFlags = NBDTransmissionFlags(rawValue: 1 << 0)
    /// Bit 1, `NBD_FLAG_READ_ONLY`.
    public static let readOnly = NBDTransmissionFlags(rawValue: 1 << 1)
    /// Bit 2, `NBD_FLAG_SEND_FLUSH`: exposes `NBD_CMD_FLUSH`.
    public static let sendFlush = NBDTransmissionFlags(rawValue: 1 << 2)
    /// Bit 3, `NBD_FLAG_SEND_FUA`: exposes `NBD_CMD_FLAG_FUA`.
    public static let sendFUA = NBDTransmissionFlags(rawValue: 1 << 3)
    /// Bit 4, `NBD_FLAG_ROTATIONAL`.
    public static let rotational = NBDTransmissionFlags(rawValue: 1 << 4)
    /// Bit 5, `NBD_FLAG_SEND_TRIM`: exposes `NBD_CMD_TRIM`.
    public static let sendTrim = NBDTransmissionFlags(rawValue: 1 << 5)
    /// Bit 6, `NBD_FLAG_SEND_WRITE_ZEROES`: exposes `NBD_CMD_WRITE_ZEROES` and `NBD_CMD_FLAG_NO_HOLE`.
    public static let sendWriteZeroes = NBDTransmissionFlags(rawValue: 1 << 6)
    /// Bit 7, `NBD_FLAG_SEND_DF`: `NBD_CMD_READ` supports `NBD_CMD_FLAG_DF`.
    public static let sendDF = NBDTransmissionFlags(rawValue: 1 << 7)
    /// Bit 8, `NBD_FLAG_CAN_MULTI_CONN`: flush and FUA are visible across connections.
    public static let canMultiConn = NBDTransmissionFlags(rawValue: 1 << 8)
    /// Bit 9, `NBD_FLAG_SEND_RESIZE` (experimental `RESIZE` extension).
    public static let sendResize = NBDTransmissionFlags(rawValue: 1 << 9)
    /// Bit 10, `NBD_FLAG_SEND_CACHE`: exposes `NBD_CMD_CACHE`.
    public static let sendCache = NBDTransmissionFlags(rawValue: 1 << 10)
    /// Bit 11, `NBD_FLAG_SEND_FAST_ZERO`: exposes `NBD_CMD_FLAG_FAST_ZERO`.
    public static let sendFastZero = NBDTransmissionFlags(rawValue: 1 << 11)
    /// Bit 12, `NBD_FLAG_BLOCK_STATUS_PAYLOAD` (experimental `EXTENDED_HEADERS` extension).
    public static let blockStatusPayload = NBDTransmissionFlags(rawValue: 1 << 12)
}
