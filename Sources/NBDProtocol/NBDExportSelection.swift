/// The outcome of a successful handshake: which export the client chose and
/// what was negotiated for the transmission phase.
///
/// proto.md, "Termination of the session during option haggling" (entering
/// transmission via `NBD_OPT_EXPORT_NAME` or `NBD_OPT_GO`),
/// `NBD_OPT_STRUCTURED_REPLY` and `NBD_OPT_SET_META_CONTEXT`.
public struct NBDExportSelection: Hashable, Sendable {
    /// The catalogue entry of the chosen export.
    public var export: NBDExport
    /// The transmission flags actually sent to the client.
    public var transmissionFlags: NBDTransmissionFlags
    /// The option that ended the handshake: `.exportName` or `.go`.
    public var enteredBy: NBDOption
    /// Whether `NBD_OPT_STRUCTURED_REPLY` was negotiated (structured replies are
    /// then mandatory for `NBD_CMD_READ`).
    public var structuredReplies: Bool
    /// The metadata contexts selected by the last `NBD_OPT_SET_META_CONTEXT`
    /// for this export, with their ids; empty if none (then
    /// `NBD_CMD_BLOCK_STATUS` SHOULD fail with `NBD_EINVAL`).
    public var metaContexts: [NBDMetaContext]
    /// The client flags received after the greeting.
    public var clientFlags: NBDClientFlags
    /// Whether `NBD_FLAG_C_NO_ZEROES` was agreed. Any zero padding owed after an
    /// `NBD_OPT_EXPORT_NAME` reply is already part of the preceding `.send`;
    /// after `NBD_OPT_GO` no padding is ever sent.
    public var noZeroes: Bool
    /// Whether the client explicitly requested `NBD_INFO_BLOCK_SIZE` in its
    /// `NBD_OPT_GO`: only then may the server assume it honours the constraints.
    public var clientRequestedBlockSize: Bool

    public init(
        export: NBDExport, transmissionFlags: NBDTransmissionFlags, enteredBy: NBDOption,
        structuredReplies: Bool, metaContexts: [NBDMetaContext], clientFlags: NBDClientFlags,
        noZeroes: Bool, clientRequestedBlockSize: Bool
    ) {
        self.export = export
        self.transmissionFlags = transmissionFlags
        self.enteredBy = enteredBy
        self.structuredReplies = structuredReplies
        self.metaContexts = metaContexts
        self.clientFlags = clientFlags
        self.noZeroes = noZeroes
        self.clientRequestedBlockSize = clientRequestedBlockSize
    }
}
