/// The type of a transmission-phase request.
///
/// proto.md, "Values" → "Request types". A struct over the raw 16-bit value
/// so that unknown commands are representable (the server SHOULD answer them
/// with `NBD_EINVAL`).
public struct NBDCommandType: NBDNamedValue, Hashable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// `NBD_CMD_READ` (0).
    public static let read = NBDCommandType(rawValue: 0)
    /// `NBD_CMD_WRITE` (1): the only request followed by a payload (compact headers).
    public static let write = NBDCommandType(rawValue: 1)
    /// `NBD_CMD_DISC` (2): soft disconnect; no reply.
    public static let disconnect = NBDCommandType(rawValue: 2)
    /// `NBD_CMD_FLUSH` (3).
    public static let flush = NBDCommandType(rawValue: 3)
    /// `NBD_CMD_TRIM` (4).
    public static let trim = NBDCommandType(rawValue: 4)
    /// `NBD_CMD_CACHE` (5).
    public static let cache = NBDCommandType(rawValue: 5)
    /// `NBD_CMD_WRITE_ZEROES` (6).
    public static let writeZeroes = NBDCommandType(rawValue: 6)
    /// `NBD_CMD_BLOCK_STATUS` (7).
    public static let blockStatus = NBDCommandType(rawValue: 7)
    /// `NBD_CMD_RESIZE` (8), experimental `RESIZE` extension.
    public static let resize = NBDCommandType(rawValue: 8)

    public static let names: [NBDCommandType: String] = [
        .read: "NBD_CMD_READ",
        .write: "NBD_CMD_WRITE",
        .disconnect: "NBD_CMD_DISC",
        .flush: "NBD_CMD_FLUSH",
        .trim: "NBD_CMD_TRIM",
        .cache: "NBD_CMD_CACHE",
        .writeZeroes: "NBD_CMD_WRITE_ZEROES",
        .blockStatus: "NBD_CMD_BLOCK_STATUS",
        .resize: "NBD_CMD_RESIZE",
    ]
    public static let unknownPrefix = "NBD_CMD"
}
