import NIOCore

/// The server side of the fixed newstyle handshake as a value-type state
/// machine over bytes: no sockets, no event loop.
///
/// proto.md, "Handshake" ("Newstyle negotiation", "Fixed newstyle
/// negotiation", "Termination of the session during option haggling"),
/// "Option types", "Option reply types", "Size constraints" and "Metadata
/// querying".
///
/// Usage: send ``greeting``, then keep appending the client's bytes to one
/// buffer and call ``process(_:)`` with it. The machine consumes only whole
/// protocol units: an incomplete option header or option data stays in the
/// buffer until more bytes arrive, except that option data it does not need
/// (unknown options, or data longer than
/// ``Configuration/maximumOptionLength``) is discarded as it arrives, so it is
/// never buffered, whatever its length (up to 4 GiB − 1). Carry out the returned
/// actions in order. After ``Action/enterTransmission(_:)`` the machine consumes
/// nothing more: bytes left in the buffer already belong to the transmission
/// phase. After ``Action/close(_:)`` the connection must be closed. After
/// ``Action/startTLS`` the machine consumes nothing until ``tlsStarted()``:
/// bytes left in the buffer are already the client's TLS handshake.
///
/// Any chunking of the client's bytes yields the same actions.
///
/// Choices where the spec leaves room:
/// - A client that omits `NBD_FLAG_C_FIXED_NEWSTYLE` is still served fixed
///   newstyle ("Servers MAY choose to honour fixed newstyle").
/// - `NBD_OPT_INFO`/`NBD_OPT_GO` always send `NBD_INFO_BLOCK_SIZE` (the server
///   "MAY send information … not explicitly requested"); `NBD_INFO_NAME` and
///   `NBD_INFO_DESCRIPTION` only when requested.
/// - `NBD_OPT_STARTTLS` follows ``Configuration/tls`` (proto.md "TLS support"):
///   `NBD_REP_ERR_POLICY` when TLS is off (NOTLS mode; nbdkit answers the same
///   when built with TLS), `NBD_REP_ACK` then ``Action/startTLS`` when offered,
///   `NBD_REP_ERR_INVALID` once TLS is running or when it carries data. Once TLS
///   is initiated, what was negotiated before it (structured replies, the
///   metadata context selection) is forgotten: proto.md, `NBD_OPT_STRUCTURED_REPLY`
///   and `NBD_OPT_SET_META_CONTEXT`, a client that sends `NBD_OPT_STARTTLS` after
///   them "MUST renegotiate" them, and a plain-text negotiation must not carry
///   over into the authenticated session.
/// - FORCEDTLS (``TLSMode/required``) before TLS: every option but
///   `NBD_OPT_STARTTLS` and `NBD_OPT_ABORT` gets `NBD_REP_ERR_TLS_REQD` (its data
///   skipped unread), and `NBD_OPT_EXPORT_NAME` closes the session ("as this
///   request cannot error, it MUST terminate the session").
/// - `NBD_OPT_EXTENDED_HEADERS` gets `NBD_REP_ERR_UNSUP` (no extended headers).
/// - `NBD_OPT_LIST_META_CONTEXT` is answered without structured replies
///   (the spec only says the server MAY refuse); `NBD_OPT_SET_META_CONTEXT`
///   needs them (`NBD_REP_ERR_INVALID` otherwise, as the spec says it SHOULD).
/// - Queries without a colon are ignored like unknown namespaces.
/// - Data longer than ``Configuration/maximumOptionLength``: `NBD_REP_ERR_TOO_BIG`
///   for `INFO`, `GO`, `LIST_META_CONTEXT`, `SET_META_CONTEXT` ("The request …
///   is too large to process"); data on `LIST`/`STRUCTURED_REPLY` is
///   `NBD_REP_ERR_INVALID` whatever its length; `ABORT` ignores its data; an
///   over-long `NBD_OPT_EXPORT_NAME` closes the session (it cannot be errored).
public struct NBDServerHandshake: Sendable {
    /// What the caller must do next.
    public enum Action: Hashable, Sendable {
        /// Write these bytes to the client.
        case send(ByteBuffer)
        /// The handshake is over: switch to the transmission phase.
        case enterTransmission(NBDExportSelection)
        /// Close the connection (after writing anything sent before).
        case close(CloseReason)
        /// `NBD_REP_ACK` to `NBD_OPT_STARTTLS` was sent (the `.send` before this
        /// action): write it in plain text, then put TLS under the connection and
        /// call ``NBDServerHandshake/tlsStarted()``. Bytes left in the buffer are
        /// the client's first TLS bytes (proto.md, FORCEDTLS mode: "all further
        /// data MUST be sent and received over TLS").
        case startTLS
    }

    /// Why the machine asks to close the connection.
    public enum CloseReason: Hashable, Sendable {
        /// The client set flags this server does not know or did not advertise.
        case unsupportedClientFlags(NBDClientFlags)
        /// An option did not start with `IHAVEOPT`.
        case badOptionMagic(UInt64)
        /// `NBD_OPT_EXPORT_NAME` named no export in the catalogue.
        case unknownExport(String)
        /// `NBD_OPT_EXPORT_NAME` data longer than ``Configuration/maximumOptionLength``.
        case exportNameTooLong(UInt32)
        /// `NBD_OPT_EXPORT_NAME` for an export that requires block size negotiation.
        case blockSizeNegotiationRequired(String)
        /// `NBD_OPT_EXPORT_NAME` while shutting down.
        case shuttingDown
        /// The client sent `NBD_OPT_ABORT` (a soft disconnect, already acknowledged).
        case clientAborted
        /// `NBD_OPT_EXPORT_NAME` before TLS was initiated in FORCEDTLS mode.
        case tlsRequired
    }

    /// A coarse view of where the machine is.
    public enum Phase: Hashable, Sendable {
        case awaitingClientFlags
        /// Waiting for an option header or for the data of a buffered option.
        case negotiating
        /// Discarding option data without buffering it.
        case skippingOptionData(remaining: Int)
        /// ``Action/startTLS`` was returned; waiting for ``NBDServerHandshake/tlsStarted()``.
        case awaitingTLS
        case transmission
        case closed
    }

    /// What to do once skipped option data is gone.
    private enum Completion: Hashable, Sendable {
        case reply(ByteBuffer)
        case replyAndClose(ByteBuffer, CloseReason)
        case replyAndStartTLS(ByteBuffer)
    }

    private enum State: Hashable, Sendable {
        case awaitingClientFlags
        case awaitingOption
        case awaitingOptionData(NBDOption, length: Int)
        case skippingOptionData(remaining: Int, then: Completion)
        case awaitingTLS
        case transmission
        case closed
    }

    private struct MetaContextSelection: Hashable, Sendable {
        var exportName: String
        var contexts: [NBDMetaContext]
    }

    public let configuration: Configuration
    private var state: State = .awaitingClientFlags
    private var clientFlags: NBDClientFlags = []
    private var structuredReplies = false
    private var metaContextSelection: MetaContextSelection?
    private var isShuttingDown = false
    /// TLS was initiated on this connection (``tlsStarted()``).
    public private(set) var isTLSActive = false

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    /// The 18-byte greeting to send as soon as the connection is accepted.
    public var greeting: ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeNBDServerGreeting(NBDServerGreeting(flags: self.configuration.handshakeFlags))
        return buffer
    }

    public var phase: Phase {
        switch self.state {
        case .awaitingClientFlags: .awaitingClientFlags
        case .awaitingOption, .awaitingOptionData: .negotiating
        case .skippingOptionData(let remaining, _): .skippingOptionData(remaining: remaining)
        case .awaitingTLS: .awaitingTLS
        case .transmission: .transmission
        case .closed: .closed
        }
    }

    /// From now on, answer every option but `NBD_OPT_ABORT` with
    /// `NBD_REP_ERR_SHUTDOWN` (proto.md: the server "SHOULD error further options
    /// received (other than an `NBD_OPT_ABORT`) with `NBD_REP_ERR_SHUTDOWN`").
    public mutating func beginShutdown() {
        self.isShuttingDown = true
    }

    /// TLS now runs under the connection (after ``Action/startTLS``): negotiation
    /// goes on, with what was negotiated in plain text forgotten (see the type's
    /// notes) and `NBD_OPT_STARTTLS` now `NBD_REP_ERR_INVALID` (proto.md, FORCEDTLS
    /// and SELECTIVETLS modes: "when TLS has already been negotiated, it MUST
    /// reply with `NBD_REP_ERR_INVALID`").
    public mutating func tlsStarted() {
        precondition(self.state == .awaitingTLS, "tlsStarted() without Action.startTLS")
        self.isTLSActive = true
        self.structuredReplies = false
        self.metaContextSelection = nil
        self.state = .awaitingOption
    }

    /// Consumes what it can of `buffer` and returns the actions to carry out, in order.
    public mutating func process(_ buffer: inout ByteBuffer) -> [Action] {
        var actions: [Action] = []
        while true {
            switch self.state {
            case .awaitingClientFlags:
                guard let raw = buffer.readInteger(as: UInt32.self) else { return actions }
                let flags = NBDClientFlags(rawValue: raw)
                var allowed: NBDClientFlags = [.fixedNewstyle]
                if self.configuration.handshakeFlags.contains(.noZeroes) { allowed.insert(.noZeroes) }
                guard allowed.isSuperset(of: flags) else {
                    self.close(.unsupportedClientFlags(flags), into: &actions)
                    return actions
                }
                self.clientFlags = flags
                self.state = .awaitingOption

            case .awaitingOption:
                guard let magic = buffer.getInteger(at: buffer.readerIndex, as: UInt64.self) else { return actions }
                guard magic == NBDMagic.option else {
                    self.close(.badOptionMagic(magic), into: &actions)
                    return actions
                }
                guard let (_, option, length) = buffer.readMultipleIntegers(as: (UInt64, UInt32, UInt32).self) else {
                    return actions
                }
                self.beginOption(NBDOption(rawValue: option), length: length, into: &actions)

            case .awaitingOptionData(let option, let length):
                guard let data = buffer.readSlice(length: length) else { return actions }
                self.state = .awaitingOption
                self.handleOption(option, data: data, into: &actions)

            case .skippingOptionData(let remaining, let completion):
                let skipped = min(remaining, buffer.readableBytes)
                buffer.moveReaderIndex(forwardBy: skipped)
                guard skipped == remaining else {
                    self.state = .skippingOptionData(remaining: remaining - skipped, then: completion)
                    return actions
                }
                self.state = .awaitingOption
                self.complete(completion, into: &actions)

            case .awaitingTLS, .transmission, .closed:
                return actions
            }
        }
    }

    // MARK: - Option dispatch

    /// Decides, from the header alone, whether the option's data is buffered,
    /// skipped, or ends the session.
    private mutating func beginOption(_ option: NBDOption, length: UInt32, into actions: inout [Action]) {
        let count = Int(length)
        let fitsLimit = length <= self.configuration.maximumOptionLength

        if option == .setMetaContext {
            // "Issuing this command replaces all previously-set metadata contexts
            // (including when this command fails)".
            self.metaContextSelection = nil
        }
        if self.isShuttingDown && option != .abort {
            if option == .exportName {
                self.close(.shuttingDown, into: &actions)
            } else {
                self.skip(
                    count,
                    then: .reply(Self.reply(.error(.errorShutdown, to: option, message: "server is shutting down"))),
                    into: &actions)
            }
            return
        }

        if self.configuration.tls == .required && !self.isTLSActive && option != .startTLS && option != .abort {
            if option == .exportName {
                self.close(.tlsRequired, into: &actions)
            } else {
                let error = NBDOptionReply.error(
                    .errorTLSRequired, to: option, message: "TLS is required: send NBD_OPT_STARTTLS first")
                self.skip(count, then: .reply(Self.reply(error)), into: &actions)
            }
            return
        }

        switch option {
        case .startTLS:
            let error: NBDOptionReply? =
                if self.configuration.tls == .off {
                    .error(.errorPolicy, to: option, message: "TLS is not enabled on this server (--tls off)")
                } else if self.isTLSActive {
                    .error(.errorInvalid, to: option, message: "TLS is already running")
                } else if count != 0 {
                    .error(.errorInvalid, to: option, message: "\(option) takes no data")
                } else {
                    nil
                }
            if let error {
                self.skip(count, then: .reply(Self.reply(error)), into: &actions)
            } else {
                self.skip(0, then: .replyAndStartTLS(Self.reply(.ack(.startTLS))), into: &actions)
            }
        case .exportName:
            if fitsLimit {
                self.state = .awaitingOptionData(option, length: count)
            } else {
                self.close(.exportNameTooLong(length), into: &actions)
            }
        case .abort:
            // "a server SHOULD ignore any data sent by the client".
            self.skip(count, then: .replyAndClose(Self.reply(.ack(.abort)), .clientAborted), into: &actions)
        case .list, .structuredReply:
            if count == 0 {
                self.state = .awaitingOptionData(option, length: 0)
            } else {
                let error = NBDOptionReply.error(.errorInvalid, to: option, message: "\(option) takes no data")
                self.skip(count, then: .reply(Self.reply(error)), into: &actions)
            }
        case .info, .go, .listMetaContext, .setMetaContext:
            if fitsLimit {
                self.state = .awaitingOptionData(option, length: count)
            } else {
                let error = NBDOptionReply.error(
                    .errorTooBig, to: option,
                    message: "option data of \(length) bytes exceeds \(self.configuration.maximumOptionLength)")
                self.skip(count, then: .reply(Self.reply(error)), into: &actions)
            }
        default:
            let error = NBDOptionReply.error(.errorUnsupported, to: option, message: "\(option) is not supported")
            self.skip(count, then: .reply(Self.reply(error)), into: &actions)
        }
    }

    private mutating func handleOption(_ option: NBDOption, data: ByteBuffer, into actions: inout [Action]) {
        switch option {
        case .exportName:
            self.handleExportName(data, into: &actions)
        case .list:
            self.handleList(into: &actions)
        case .structuredReply:
            self.structuredReplies = true
            actions.append(.send(Self.reply(.ack(.structuredReply))))
        case .info, .go:
            self.handleInfoOrGo(option, data: data, into: &actions)
        case .listMetaContext, .setMetaContext:
            self.handleMetaContext(option, data: data, into: &actions)
        default:
            preconditionFailure("\(option) is never buffered")
        }
    }

    private mutating func skip(_ count: Int, then completion: Completion, into actions: inout [Action]) {
        if count == 0 {
            self.state = .awaitingOption
            self.complete(completion, into: &actions)
        } else {
            self.state = .skippingOptionData(remaining: count, then: completion)
        }
    }

    private mutating func complete(_ completion: Completion, into actions: inout [Action]) {
        switch completion {
        case .reply(let bytes):
            actions.append(.send(bytes))
        case .replyAndClose(let bytes, let reason):
            actions.append(.send(bytes))
            self.close(reason, into: &actions)
        case .replyAndStartTLS(let bytes):
            actions.append(.send(bytes))
            self.state = .awaitingTLS
            actions.append(.startTLS)
        }
    }

    private mutating func close(_ reason: CloseReason, into actions: inout [Action]) {
        self.state = .closed
        actions.append(.close(reason))
    }

    // MARK: - Options

    private mutating func handleExportName(_ data: ByteBuffer, into actions: inout [Action]) {
        let name = String(buffer: data)
        guard let export = self.configuration.export(named: data.readableBytesView) else {
            self.close(.unknownExport(name), into: &actions)
            return
        }
        guard !export.requiresBlockSizeNegotiation else {
            self.close(.blockSizeNegotiationRequired(export.name), into: &actions)
            return
        }
        let noZeroes = self.clientFlags.contains(.noZeroes)
        let flags = self.advertisedFlags(for: export)
        var reply = ByteBuffer()
        reply.writeNBDExportNameReply(NBDExportNameReply(size: export.size, flags: flags), noZeroes: noZeroes)
        actions.append(.send(reply))
        self.enterTransmission(export, flags: flags, enteredBy: .exportName, requestedBlockSize: false, into: &actions)
    }

    private mutating func handleList(into actions: inout [Action]) {
        guard self.configuration.allowsListing else {
            actions.append(.send(Self.reply(.error(.errorPolicy, to: .list, message: "listing exports is disabled"))))
            return
        }
        var bytes = ByteBuffer()
        for export in self.configuration.exports {
            bytes.writeNBDOptionReply(.server(name: export.name, details: export.description ?? ""))
        }
        bytes.writeNBDOptionReply(.ack(.list))
        actions.append(.send(bytes))
    }

    private mutating func handleInfoOrGo(_ option: NBDOption, data: ByteBuffer, into actions: inout [Action]) {
        // 32 bits name length (≤ data length − 6), name, 16 bits count, 16 bits × count.
        var data = data
        guard let nameLength = data.readInteger(as: UInt32.self), Int(nameLength) <= data.readableBytes - 2,
            let name = data.readSlice(length: Int(nameLength)),
            let count = data.readInteger(as: UInt16.self), data.readableBytes == 2 * Int(count)
        else {
            actions.append(.send(Self.reply(.error(.errorInvalid, to: option, message: "malformed \(option) data"))))
            return
        }
        guard nameLength <= NBDLimits.maximumStringLength else {
            actions.append(.send(Self.reply(.error(.errorInvalid, to: option, message: "export name too long"))))
            return
        }
        var requests: Set<NBDInfoType> = []
        while let request = data.readInteger(as: UInt16.self) {
            requests.insert(NBDInfoType(rawValue: request))
        }
        guard let export = self.configuration.export(named: name.readableBytesView) else {
            let message = "unknown export '\(String(buffer: name))'"
            actions.append(.send(Self.reply(.error(.errorUnknown, to: option, message: message))))
            return
        }

        let requestedBlockSize = requests.contains(.blockSize)
        var bytes = ByteBuffer()
        if option == .go && export.requiresBlockSizeNegotiation && !requestedBlockSize {
            // "SHOULD ensure it first sends an NBD_INFO_BLOCK_SIZE information reply".
            bytes.writeNBDOptionReply(.info(.blockSize(export.blockSize), to: option))
            bytes.writeNBDOptionReply(
                .error(.errorBlockSizeRequired, to: option, message: "export requires NBD_INFO_BLOCK_SIZE"))
            actions.append(.send(bytes))
            return
        }

        let flags = self.advertisedFlags(for: export)
        bytes.writeNBDOptionReply(.info(.export(size: export.size, flags: flags), to: option))
        if requests.contains(.name) {
            bytes.writeNBDOptionReply(.info(.name(export.name), to: option))
        }
        if requests.contains(.description), let description = export.description {
            bytes.writeNBDOptionReply(.info(.description(description), to: option))
        }
        bytes.writeNBDOptionReply(.info(.blockSize(export.blockSize), to: option))
        bytes.writeNBDOptionReply(.ack(option))
        actions.append(.send(bytes))

        if option == .go {
            self.enterTransmission(
                export, flags: flags, enteredBy: .go, requestedBlockSize: requestedBlockSize, into: &actions)
        }
    }

    private mutating func handleMetaContext(_ option: NBDOption, data: ByteBuffer, into actions: inout [Action]) {
        guard let (name, queries) = Self.parseMetaContextData(data) else {
            actions.append(.send(Self.reply(.error(.errorInvalid, to: option, message: "malformed \(option) data"))))
            return
        }
        if option == .setMetaContext && !self.structuredReplies {
            let message = "NBD_OPT_STRUCTURED_REPLY must be negotiated first"
            actions.append(.send(Self.reply(.error(.errorInvalid, to: option, message: message))))
            return
        }
        guard let export = self.configuration.export(named: name.readableBytesView) else {
            let message = "unknown export '\(String(buffer: name))'"
            actions.append(.send(Self.reply(.error(.errorUnknown, to: option, message: message))))
            return
        }

        let available = self.configuration.metaContexts
        let matched: [NBDMetaContext]
        if option == .listMetaContext {
            // Zero queries list everything; "namespace:" lists the whole namespace;
            // the context ids in these replies SHOULD be zero.
            let names = available.filter { context in
                queries.isEmpty
                    || queries.contains { query in
                        query == context.name || (query.hasSuffix(":") && context.name.hasPrefix(query))
                    }
            }
            matched = names.map { NBDMetaContext(id: 0, name: $0.name) }
        } else {
            // Only exact names select ("base:" MUST be ignored here); unknown ones are ignored.
            matched = available.filter { queries.contains($0.name) }
            self.metaContextSelection = MetaContextSelection(exportName: export.name, contexts: matched)
        }

        var bytes = ByteBuffer()
        for context in matched {
            bytes.writeNBDOptionReply(.metaContext(context, to: option))
        }
        bytes.writeNBDOptionReply(.ack(option))
        actions.append(.send(bytes))
    }

    /// Parses `32 bits name length, name, 32 bits count, (32 bits length, query) × count`,
    /// which must fill the data exactly; strings are at most 4096 bytes.
    private static func parseMetaContextData(_ data: ByteBuffer) -> (ByteBuffer, [String])? {
        var data = data
        guard let nameLength = data.readInteger(as: UInt32.self), nameLength <= NBDLimits.maximumStringLength,
            let name = data.readSlice(length: Int(nameLength)),
            let count = data.readInteger(as: UInt32.self),
            // every query takes at least its 4-byte length
            Int(count) <= data.readableBytes / 4
        else { return nil }
        var queries: [String] = []
        queries.reserveCapacity(Int(count))
        for _ in 0..<count {
            guard let length = data.readInteger(as: UInt32.self), length <= NBDLimits.maximumStringLength,
                let query = data.readString(length: Int(length))
            else { return nil }
            queries.append(query)
        }
        guard data.readableBytes == 0 else { return nil }
        return (name, queries)
    }

    // MARK: - Transmission

    /// The transmission flags this session may advertise for `export`:
    /// `NBD_FLAG_HAS_FLAGS` always; `NBD_FLAG_SEND_DF` only with structured
    /// replies; `NBD_FLAG_SEND_FAST_ZERO` only with `NBD_FLAG_SEND_WRITE_ZEROES`;
    /// never `NBD_FLAG_BLOCK_STATUS_PAYLOAD` (no extended headers).
    private func advertisedFlags(for export: NBDExport) -> NBDTransmissionFlags {
        var flags = export.flags
        flags.insert(.hasFlags)
        flags.remove(.blockStatusPayload)
        if !self.structuredReplies { flags.remove(.sendDF) }
        if !flags.contains(.sendWriteZeroes) { flags.remove(.sendFastZero) }
        return flags
    }

    private mutating func enterTransmission(
        _ export: NBDExport, flags: NBDTransmissionFlags, enteredBy option: NBDOption, requestedBlockSize: Bool,
        into actions: inout [Action]
    ) {
        var contexts: [NBDMetaContext] = []
        if let selection = self.metaContextSelection, selection.exportName == export.name {
            contexts = selection.contexts
        }
        let selection = NBDExportSelection(
            export: export, transmissionFlags: flags, enteredBy: option, structuredReplies: self.structuredReplies,
            metaContexts: contexts, clientFlags: self.clientFlags, noZeroes: self.clientFlags.contains(.noZeroes),
            clientRequestedBlockSize: requestedBlockSize)
        self.state = .transmission
        actions.append(.enterTransmission(selection))
    }

    private static func reply(_ reply: NBDOptionReply) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeNBDOptionReply(reply)
        return buffer
    }
}
