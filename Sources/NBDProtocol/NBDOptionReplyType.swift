/// The reply type of a fixed-newstyle option reply.
///
/// proto.md, "Values" → "Option reply types". Error replies have bit 31 set
/// and MAY carry a human-readable message as their data.
public struct NBDOptionReplyType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    private static let errorBit: UInt32 = 1 << 31

    /// `NBD_REP_ACK` (1).
    public static let ack = NBDOptionReplyType(rawValue: 1)
    /// `NBD_REP_SERVER` (2): one export, in reply to `NBD_OPT_LIST`.
    public static let server = NBDOptionReplyType(rawValue: 2)
    /// `NBD_REP_INFO` (3): one ``NBDInfo`` item, in reply to `NBD_OPT_INFO`/`NBD_OPT_GO`.
    public static let info = NBDOptionReplyType(rawValue: 3)
    /// `NBD_REP_META_CONTEXT` (4): one metadata context.
    public static let metaContext = NBDOptionReplyType(rawValue: 4)

    /// `NBD_REP_ERR_UNSUP` (2^31 + 1).
    public static let errorUnsupported = NBDOptionReplyType(rawValue: errorBit | 1)
    /// `NBD_REP_ERR_POLICY` (2^31 + 2).
    public static let errorPolicy = NBDOptionReplyType(rawValue: errorBit | 2)
    /// `NBD_REP_ERR_INVALID` (2^31 + 3).
    public static let errorInvalid = NBDOptionReplyType(rawValue: errorBit | 3)
    /// `NBD_REP_ERR_PLATFORM` (2^31 + 4).
    public static let errorPlatform = NBDOptionReplyType(rawValue: errorBit | 4)
    /// `NBD_REP_ERR_TLS_REQD` (2^31 + 5).
    public static let errorTLSRequired = NBDOptionReplyType(rawValue: errorBit | 5)
    /// `NBD_REP_ERR_UNKNOWN` (2^31 + 6).
    public static let errorUnknown = NBDOptionReplyType(rawValue: errorBit | 6)
    /// `NBD_REP_ERR_SHUTDOWN` (2^31 + 7).
    public static let errorShutdown = NBDOptionReplyType(rawValue: errorBit | 7)
    /// `NBD_REP_ERR_BLOCK_SIZE_REQD` (2^31 + 8).
    public static let errorBlockSizeRequired = NBDOptionReplyType(rawValue: errorBit | 8)
    /// `NBD_REP_ERR_TOO_BIG` (2^31 + 9).
    public static let errorTooBig = NBDOptionReplyType(rawValue: errorBit | 9)
    /// `NBD_REP_ERR_EXT_HEADER_REQD` (2^31 + 10), experimental `EXTENDED_HEADERS` extension.
    public static let errorExtendedHeaderRequired = NBDOptionReplyType(rawValue: errorBit | 10)

    /// Whether this is an error reply (bit 31 set).
    public var isError: Bool { self.rawValue & Self.errorBit != 0 }

    public var description: String {
        switch self {
        case .ack: "NBD_REP_ACK"
        case .server: "NBD_REP_SERVER"
        case .info: "NBD_REP_INFO"
        case .metaContext: "NBD_REP_META_CONTEXT"
        case .errorUnsupported: "NBD_REP_ERR_UNSUP"
        case .errorPolicy: "NBD_REP_ERR_POLICY"
        case .errorInvalid: "NBD_REP_ERR_INVALID"
        case .errorPlatform: "NBD_REP_ERR_PLATFORM"
        case .errorTLSRequired: "NBD_REP_ERR_TLS_REQD"
        case .errorUnknown: "NBD_REP_ERR_UNKNOWN"
        case .errorShutdown: "NBD_REP_ERR_SHUTDOWN"
        case .errorBlockSizeRequired: "NBD_REP_ERR_BLOCK_SIZE_REQD"
        case .errorTooBig: "NBD_REP_ERR_TOO_BIG"
        case .errorExtendedHeaderRequired: "NBD_REP_ERR_EXT_HEADER_REQD"
        default: "NBD_REP(\(self.rawValue))"
        }
    }
}
