/// The information type of an `NBD_REP_INFO` reply or an information request
/// in `NBD_OPT_INFO`/`NBD_OPT_GO`.
///
/// proto.md, "Values" → "Option reply types" → `NBD_REP_INFO`. A struct over
/// the raw 16-bit value: unknown requests MUST be ignored, not rejected.
public struct NBDInfoType: NBDNamedValue, Hashable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// `NBD_INFO_EXPORT` (0): size and transmission flags; mandatory before a successful ACK.
    public static let export = NBDInfoType(rawValue: 0)
    /// `NBD_INFO_NAME` (1): the canonical export name.
    public static let name = NBDInfoType(rawValue: 1)
    /// `NBD_INFO_DESCRIPTION` (2): a human-readable description.
    public static let description = NBDInfoType(rawValue: 2)
    /// `NBD_INFO_BLOCK_SIZE` (3): minimum, preferred and maximum block/payload sizes.
    public static let blockSize = NBDInfoType(rawValue: 3)

    public static let names: [NBDInfoType: String] = [
        .export: "NBD_INFO_EXPORT",
        .name: "NBD_INFO_NAME",
        .description: "NBD_INFO_DESCRIPTION",
        .blockSize: "NBD_INFO_BLOCK_SIZE",
    ]
    public static let unknownPrefix = "NBD_INFO"
}
