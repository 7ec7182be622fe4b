/// An option code sent by the client during option haggling.
///
/// proto.md, "Values" → "Option types". A struct over the raw 32-bit value so
/// that options this implementation does not know stay representable (the
/// server answers them with `NBD_REP_ERR_UNSUP`).
public struct NBDOption: NBDNamedValue, Hashable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `NBD_OPT_EXPORT_NAME` (1).
    public static let exportName = NBDOption(rawValue: 1)
    /// `NBD_OPT_ABORT` (2).
    public static let abort = NBDOption(rawValue: 2)
    /// `NBD_OPT_LIST` (3).
    public static let list = NBDOption(rawValue: 3)
    /// `NBD_OPT_PEEK_EXPORT` (4), withdrawn.
    public static let peekExport = NBDOption(rawValue: 4)
    /// `NBD_OPT_STARTTLS` (5).
    public static let startTLS = NBDOption(rawValue: 5)
    /// `NBD_OPT_INFO` (6).
    public static let info = NBDOption(rawValue: 6)
    /// `NBD_OPT_GO` (7).
    public static let go = NBDOption(rawValue: 7)
    /// `NBD_OPT_STRUCTURED_REPLY` (8).
    public static let structuredReply = NBDOption(rawValue: 8)
    /// `NBD_OPT_LIST_META_CONTEXT` (9).
    public static let listMetaContext = NBDOption(rawValue: 9)
    /// `NBD_OPT_SET_META_CONTEXT` (10).
    public static let setMetaContext = NBDOption(rawValue: 10)
    /// `NBD_OPT_EXTENDED_HEADERS` (11), experimental `EXTENDED_HEADERS` extension.
    public static let extendedHeaders = NBDOption(rawValue: 11)

    public static let names: [NBDOption: String] = [
        .exportName: "NBD_OPT_EXPORT_NAME",
        .abort: "NBD_OPT_ABORT",
        .list: "NBD_OPT_LIST",
        .peekExport: "NBD_OPT_PEEK_EXPORT",
        .startTLS: "NBD_OPT_STARTTLS",
        .info: "NBD_OPT_INFO",
        .go: "NBD_OPT_GO",
        .structuredReply: "NBD_OPT_STRUCTURED_REPLY",
        .listMetaContext: "NBD_OPT_LIST_META_CONTEXT",
        .setMetaContext: "NBD_OPT_SET_META_CONTEXT",
        .extendedHeaders: "NBD_OPT_EXTENDED_HEADERS",
    ]
    public static let unknownPrefix = "NBD_OPT"
}
