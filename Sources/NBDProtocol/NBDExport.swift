/// One entry of the server's export catalogue, as offered during the handshake.
///
/// proto.md, "Option types" (`NBD_OPT_EXPORT_NAME`, `NBD_OPT_LIST`,
/// `NBD_OPT_INFO`/`NBD_OPT_GO`) and "Option reply types" (`NBD_INFO_*`).
public struct NBDExport: Hashable, Sendable {
    /// The export name; the empty name is the "default" export.
    public var name: String
    /// A human-readable description for `NBD_REP_SERVER` and `NBD_INFO_DESCRIPTION`.
    public var description: String?
    /// The size of the export in bytes.
    public var size: UInt64
    /// The transmission flags of the export. ``NBDServerHandshake`` always adds
    /// `NBD_FLAG_HAS_FLAGS` and clears the flags the session may not advertise.
    public var flags: NBDTransmissionFlags
    /// The size constraints sent in `NBD_INFO_BLOCK_SIZE`.
    public var blockSize: NBDBlockSizeConstraints
    /// When true, `NBD_OPT_GO` without an `NBD_INFO_BLOCK_SIZE` request fails with
    /// `NBD_REP_ERR_BLOCK_SIZE_REQD` and `NBD_OPT_EXPORT_NAME` closes the session
    /// (for non-default constraints the server cannot enforce gracefully).
    public var requiresBlockSizeNegotiation: Bool

    public init(
        name: String,
        description: String? = nil,
        size: UInt64,
        flags: NBDTransmissionFlags = [.hasFlags],
        blockSize: NBDBlockSizeConstraints = .default,
        requiresBlockSizeNegotiation: Bool = false
    ) {
        self.name = name
        self.description = description
        self.size = size
        self.flags = flags
        self.blockSize = blockSize
        self.requiresBlockSizeNegotiation = requiresBlockSizeNegotiation
    }
}
