/// The type of a structured reply chunk.
///
/// proto.md, "Values" → "Structured reply types". Error chunk types have bit 15
/// set and begin with an error value and a message.
public struct NBDReplyType: NBDNamedValue, Hashable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// `NBD_REPLY_TYPE_NONE` (0): no payload; only with `NBD_REPLY_FLAG_DONE`.
    public static let none = NBDReplyType(rawValue: 0)
    /// `NBD_REPLY_TYPE_OFFSET_DATA` (1): offset then data.
    public static let offsetData = NBDReplyType(rawValue: 1)
    /// `NBD_REPLY_TYPE_OFFSET_HOLE` (2): offset then hole size.
    public static let offsetHole = NBDReplyType(rawValue: 2)
    /// `NBD_REPLY_TYPE_BLOCK_STATUS` (5): context id then (length, flags) descriptors.
    public static let blockStatus = NBDReplyType(rawValue: 5)
    /// `NBD_REPLY_TYPE_ERROR` (2^15 + 1).
    public static let error = NBDReplyType(rawValue: 0x8001)
    /// `NBD_REPLY_TYPE_ERROR_OFFSET` (2^15 + 2).
    public static let errorOffset = NBDReplyType(rawValue: 0x8002)

    /// Whether this is an error chunk type (bit 15 set).
    public var isError: Bool { self.rawValue & 0x8000 != 0 }

    public static let names: [NBDReplyType: String] = [
        .none: "NBD_REPLY_TYPE_NONE",
        .offsetData: "NBD_REPLY_TYPE_OFFSET_DATA",
        .offsetHole: "NBD_REPLY_TYPE_OFFSET_HOLE",
        .blockStatus: "NBD_REPLY_TYPE_BLOCK_STATUS",
        .error: "NBD_REPLY_TYPE_ERROR",
        .errorOffset: "NBD_REPLY_TYPE_ERROR_OFFSET",
    ]
    public static let unknownPrefix = "NBD_REPLY_TYPE"
}
