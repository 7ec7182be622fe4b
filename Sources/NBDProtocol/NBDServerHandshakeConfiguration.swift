import NIOCore

extension NBDServerHandshake {
    /// How the server treats `NBD_OPT_STARTTLS` (proto.md, "TLS support" →
    /// "Server-side requirements").
    public enum TLSMode: Hashable, Sendable {
        /// NOTLS mode: `NBD_OPT_STARTTLS` gets `NBD_REP_ERR_POLICY` (TLS is
        /// supported, but turned off); `NBD_REP_ERR_TLS_REQD` is never sent.
        case off
        /// SELECTIVETLS mode with no TLS-only export: a client may upgrade with
        /// `NBD_OPT_STARTTLS` or stay in plain text (nbdkit's and qemu-nbd's `--tls=on`).
        case optional
        /// FORCEDTLS mode: until TLS is initiated every option but
        /// `NBD_OPT_STARTTLS` and `NBD_OPT_ABORT` gets `NBD_REP_ERR_TLS_REQD`, and
        /// `NBD_OPT_EXPORT_NAME` ends the session (nbdkit's `--tls=require`).
        case required
    }

    /// What the server offers during the handshake.
    ///
    /// proto.md, "Option types" (`NBD_OPT_LIST`, `NBD_OPT_INFO`/`NBD_OPT_GO`,
    /// `NBD_OPT_*_META_CONTEXT`), "Handshake flags" and "Metadata querying".
    public struct Configuration: Hashable, Sendable {
        /// The default ``maximumOptionLength``: room for a 4096-byte export name
        /// and a generous list of requests or queries.
        public static let defaultMaximumOptionLength: UInt32 = 64 * 1024

        /// The export catalogue, in the order `NBD_OPT_LIST` reports it.
        public var exports: [NBDExport]
        /// The export used when the client asks for the empty name and no export
        /// is called "" (proto.md: the empty name "is reserved for a 'default' export").
        public var defaultExportName: String?
        /// Whether the `base:allocation` metadata context is offered.
        public var offersBaseAllocation: Bool
        /// The longest option data the server buffers. Longer data is skipped
        /// without buffering and answered with `NBD_REP_ERR_TOO_BIG` (or ends the
        /// session for `NBD_OPT_EXPORT_NAME`).
        public var maximumOptionLength: UInt32
        /// Whether `NBD_OPT_LIST` is answered (otherwise `NBD_REP_ERR_POLICY`).
        public var allowsListing: Bool
        /// Whether the greeting advertises `NBD_FLAG_NO_ZEROES` (a client may only
        /// set `NBD_FLAG_C_NO_ZEROES` if it was advertised).
        public var advertisesNoZeroes: Bool
        /// Whether and how TLS is offered.
        public var tls: TLSMode

        public init(
            exports: [NBDExport],
            defaultExportName: String? = nil,
            offersBaseAllocation: Bool = true,
            maximumOptionLength: UInt32 = Configuration.defaultMaximumOptionLength,
            allowsListing: Bool = true,
            advertisesNoZeroes: Bool = true,
            tls: TLSMode = .off
        ) {
            self.exports = exports
            self.defaultExportName = defaultExportName
            self.offersBaseAllocation = offersBaseAllocation
            self.maximumOptionLength = maximumOptionLength
            self.allowsListing = allowsListing
            self.advertisesNoZeroes = advertisesNoZeroes
            self.tls = tls
        }

        /// The handshake flags of the greeting: always `NBD_FLAG_FIXED_NEWSTYLE`.
        public var handshakeFlags: NBDHandshakeFlags {
            self.advertisesNoZeroes ? [.fixedNewstyle, .noZeroes] : [.fixedNewstyle]
        }

        /// The metadata contexts that can be selected, with the id each gets when
        /// selected by `NBD_OPT_SET_META_CONTEXT` (its position, from 1).
        public var metaContexts: [NBDMetaContext] {
            let names = self.offersBaseAllocation ? [NBDAllocationState.contextName] : []
            return names.enumerated().map { NBDMetaContext(id: UInt32($0.offset + 1), name: $0.element) }
        }

        /// The export a client asking for `name` (raw bytes) gets, if any.
        public func export(named name: some Collection<UInt8>) -> NBDExport? {
            if let export = self.exports.first(where: { $0.name.utf8.elementsEqual(name) }) {
                return export
            }
            if name.isEmpty, let defaultName = self.defaultExportName {
                return self.exports.first { $0.name == defaultName }
            }
            return nil
        }
    }
}
