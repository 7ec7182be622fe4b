import DMA
import Logging
import NBDProtocol
import NIOCore
import NVMeHost

/// One NBD connection: the handshake (``NBDServerHandshake``), then the
/// transmission phase, where each request becomes NVMe commands on the queue pair
/// of the connection's event loop and is answered when they complete (in any
/// order). Everything here runs on the channel's event loop; completions are
/// delivered there by the queue pair's interrupt.
///
/// Back-pressure: when too many requests or payload bytes are in flight, the
/// handler stops asking the channel to read until replies drain.
final class NBDConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Phase {
        case handshake
        case transmission
        case closed
    }

    let server: ServerContext
    var logger: Logger
    var context: ChannelHandlerContext!
    var phase = Phase.handshake
    var handshake: NBDServerHandshake
    var handshakeBuffer: ByteBuffer?
    var handshakeTimer: Scheduled<Void>?
    var registration: Int?

    // Transmission.
    var export: Export!
    var queuePair: QueuePair!
    var structuredReplies = false
    var baseAllocationContext: UInt32?
    var decoder: NIOSingleStepByteToMessageProcessor<NBDRequestDecoder>!
    var inFlight = 0
    var inFlightBytes = 0
    var readHeld = false
    var flushScheduled = false
    var inChannelRead = false
    var submittedInRead = false
    var disconnectRequested = false
    /// Requests decoded while over the limits, oldest first.
    var deferred = CircularBuffer<(NBDRequest, ByteBuffer?)>()
    var shuttingDown = false
    /// Set when the connection entered transmission and was counted in
    /// `activeConnections` (so the count is given back exactly once).
    var countedActive = false
    /// A close waiting for the queued replies to be written (see ``closeIfIdle()``).
    var closing = false
    /// Server shutdown: the linger period (see ``beginShutdown()``) is over.
    var lingerExpired = false
    var lingerTimer: Scheduled<Void>?

    init(server: ServerContext, logger: Logger) {
        self.server = server
        self.logger = logger
        handshake = NBDServerHandshake(configuration: server.handshake)
    }

    var bound: NIOLoopBound<NBDConnectionHandler> { NIOLoopBound(self, eventLoop: context.eventLoop) }

    // MARK: Life cycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelActive(context: ChannelHandlerContext) {
        logger[metadataKey: "peer"] = "\(context.remoteAddress.map { "\($0)" } ?? "unix")"
        let count = server.connectionCount.add(1, ordering: .relaxed).newValue
        let b = bound
        registration = server.registry.add { b.eventLoop.execute { b.value.beginShutdown() } }
        if count > server.limits.maximumConnections || server.shuttingDown.load(ordering: .relaxed) {
            // Refuse clearly: the greeting, then every option gets ERR_SHUTDOWN/
            // ERR_POLICY-style replies from a machine that is shutting down.
            logger.warning("refusing connection: \(count) connections exceed --max-connections \(server.limits.maximumConnections)")
            handshake.beginShutdown()
            shuttingDown = true
        }
        context.writeAndFlush(wrapOutboundOut(handshake.greeting), promise: nil)
        let timeout = TimeAmount.seconds(server.limits.handshakeTimeoutSeconds)
        handshakeTimer = context.eventLoop.scheduleTask(in: timeout) {
            let h = b.value
            guard h.phase == .handshake else { return }
            h.logger.info("handshake timed out after \(h.server.limits.handshakeTimeoutSeconds) s; closing")
            h.close()
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Not `phase == .transmission`: close() sets `.closed` before the channel
        // goes inactive, so every connection the server closed itself (DISC,
        // shutdown, bad magic) used to stay counted as active forever.
        if countedActive {
            countedActive = false
            export.statistics.activeConnections.add(-1, ordering: .relaxed)
        }
        phase = .closed
        handshakeTimer?.cancel()
        lingerTimer?.cancel()
        server.connectionCount.subtract(1, ordering: .relaxed)
        if let r = registration { server.registry.remove(r) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.debug("connection error: \(error)")
        close()
    }

    func close() {
        guard phase != .closed else { return }
        phase = .closed
        context.close(promise: nil)
    }

    /// Server shutdown: requests in flight finish, every request read from now on
    /// is answered with ESHUTDOWN, and the connection closes once it is idle and
    /// either the client has disconnected (NBD_CMD_DISC) or the linger period
    /// (``ConnectionLimits/shutdownLingerMilliseconds``) is over.
    ///
    /// The linger is what makes "subsequently received requests SHOULD get
    /// NBD_ESHUTDOWN" (proto.md, "Terminating the transmission phase") hold in
    /// practice: the server used to stop reading and close as soon as it was idle,
    /// so requests a client had already sent (or that libnbd had queued and sent a
    /// moment later) were never answered and failed with ENOTCONN on the client.
    /// A client that receives ESHUTDOWN MUST initiate a soft disconnect, which
    /// ends the linger early.
    func beginShutdown() {
        shuttingDown = true
        switch phase {
        case .handshake:
            handshake.beginShutdown()
            close()
        case .transmission:
            armShutdownLinger()
            closeIfIdle()
        case .closed:
            break
        }
    }

    func armShutdownLinger() {
        guard lingerTimer == nil else { return }
        let b = bound
        lingerTimer = context.eventLoop.scheduleTask(in: .milliseconds(server.limits.shutdownLingerMilliseconds)) {
            let h = b.value
            h.lingerExpired = true
            h.closeIfIdle()
        }
    }

    // MARK: Reading

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        switch phase {
        case .handshake:
            if handshakeBuffer == nil {
                handshakeBuffer = bytes
            } else {
                handshakeBuffer!.writeBuffer(&bytes)
            }
            runHandshake()
        case .transmission:
            decode(bytes)
        case .closed:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if submittedInRead {
            submittedInRead = false
            queuePair.commitSubmissions()
            // Shallow queues only: with many commands in flight the interrupt comes
            // soon anyway and polling would take CPU from the controller.
            let poll = server.limits.completionPollNanoseconds
            if poll > 0 && queuePair.outstandingCount <= server.limits.completionPollDepth {
                queuePair.pollCompletions(nanoseconds: poll)
            }
        }
        if flushScheduled {
            flushScheduled = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        if shouldHoldReads {
            readHeld = true
        } else {
            context.read()
        }
    }

    /// Too much in flight, or replies are not leaving (the client does not read).
    var overLimits: Bool {
        inFlight >= server.limits.maximumInFlightRequests || inFlightBytes >= server.limits.maximumInFlightBytes
            || !context.channel.isWritable
    }

    private var shouldHoldReads: Bool {
        phase == .transmission && (overLimits || !deferred.isEmpty || disconnectRequested)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, phase == .transmission {
            drainDeferred()
            resumeReadingIfPossible()
        }
        context.fireChannelWritabilityChanged()
    }

    private func resumeReadingIfPossible() {
        if readHeld && !shouldHoldReads {
            readHeld = false
            context.read()
        }
    }

    private func runHandshake() {
        guard var buffer = handshakeBuffer else { return }
        let actions = handshake.process(&buffer)
        // Drop what was consumed, so skipped option data is never kept.
        if buffer.readableBytes == 0 {
            handshakeBuffer = nil
        } else {
            buffer.discardReadBytes()
            handshakeBuffer = buffer
        }
        for action in actions {
            switch action {
            case .send(let b):
                context.write(wrapOutboundOut(b), promise: nil)
            case .close(let reason):
                logger.info("closing during handshake: \(reason)")
                context.flush()
                close()
                return
            case .enterTransmission(let selection):
                context.flush()
                guard let export = server.export(named: selection.export.name) else {
                    logger.error("handshake chose unknown export '\(selection.export.name)'")
                    close()
                    return
                }
                enterTransmission(export, selection)
                return
            }
        }
        context.flush()
    }

    private func enterTransmission(_ export: Export, _ selection: NBDExportSelection) {
        handshakeTimer?.cancel()
        handshakeTimer = nil
        self.export = export
        queuePair = export.queuePair(for: context.eventLoop)
        structuredReplies = selection.structuredReplies
        baseAllocationContext = selection.metaContexts.first { $0.name == NBDAllocationState.contextName }?.id
        decoder = NIOSingleStepByteToMessageProcessor(NBDRequestDecoder(maximumPayload: export.maximumPayload),
                                                      maximumBufferSize: nil)
        phase = .transmission
        export.statistics.bump(export.statistics.connections)
        export.statistics.activeConnections.add(1, ordering: .relaxed)
        countedActive = true
        logger[metadataKey: "export"] = "\(export.spec.name)"
        logger.info("transmission: structured replies \(structuredReplies), base:allocation \(baseAllocationContext != nil)")
        let rest = handshakeBuffer
        handshakeBuffer = nil
        if let rest, rest.readableBytes > 0 { decode(rest) }
        if shuttingDown {
            armShutdownLinger()
            closeIfIdle()
        }
    }

    private func decode(_ bytes: ByteBuffer) {
        inChannelRead = true
        defer { inChannelRead = false }
        do {
            try decoder.process(buffer: bytes) { message in
                self.handle(message)
            }
        } catch {
            logger.info("closing: \(error)")
            close()
        }
    }

    // MARK: Replies

    /// Queues `buffer` and arranges one flush for everything queued in this tick.
    func send(_ buffer: ByteBuffer) {
        guard phase != .closed else { return }
        context.write(wrapOutboundOut(buffer), promise: nil)
        guard !flushScheduled else { return }
        flushScheduled = true
        if !inChannelRead {
            let b = bound
            context.eventLoop.execute {
                let h = b.value
                guard h.flushScheduled else { return }
                h.flushScheduled = false
                h.context.flush()
            }
        }
    }

    /// A reply with no data, success or error, in the negotiated reply style.
    func replyStatus(_ cookie: UInt64, _ error: NBDErrno, message: String = "") {
        var b = context.channel.allocator.buffer(capacity: 64)
        if error != .success { export.statistics.bump(export.statistics.errors) }
        if structuredReplies {
            if error == .success {
                b.writeNBDStructuredReplyChunk(NBDStructuredReplyChunk(flags: .done, cookie: cookie, payload: .none))
            } else {
                let text = String(message.utf8.prefix(4096)) ?? ""
                b.writeNBDStructuredReplyChunk(NBDStructuredReplyChunk(flags: .done, cookie: cookie,
                                                                       payload: .error(error, message: text)))
            }
        } else {
            b.writeNBDSimpleReplyHeader(error: error, cookie: cookie)
        }
        send(b)
    }

    /// Marks a request as started (for back-pressure and shutdown).
    func begin(_ bytes: Int) {
        inFlight += 1
        inFlightBytes += bytes
    }

    /// Marks a request as answered; resumes reading when below the limits.
    func end(_ bytes: Int) {
        inFlight -= 1
        inFlightBytes -= bytes
        if !deferred.isEmpty { drainDeferred() }
        resumeReadingIfPossible()
        if disconnectRequested || shuttingDown { closeIfIdle() }
    }

    func closeIfIdle() {
        guard phase == .transmission, !closing else { return }
        if shuttingDown {
            // Decoded but not started: answer ESHUTDOWN.
            while !deferred.isEmpty {
                let (r, _) = deferred.removeFirst()
                if r.type == .disconnect { disconnectRequested = true; continue }
                begin(0)
                replyStatus(r.cookie, .eshutdown, message: "server shutting down")
                inFlight -= 1
            }
        }
        guard inFlight == 0, deferred.isEmpty else { return }
        if shuttingDown && !disconnectRequested && !lingerExpired { return }
        closing = true
        // Close once every reply queued so far is on the wire: a plain close()
        // fails the writes still pending in the channel, so a large read reply the
        // client had not drained yet was cut short by NBD_CMD_DISC or shutdown
        // (proto.md: the server MUST handle all outstanding requests first). Write
        // promises complete in order, so an empty write's promise marks the end.
        let b = bound
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: written)
        flushScheduled = false
        written.futureResult.whenComplete { _ in b.value.close() }
    }

    /// A completion callback that runs `body` on this connection's event loop
    /// (completions after a controller reset may arrive on another thread).
    func onLoop<T: Sendable>(_ body: @escaping @Sendable (NBDConnectionHandler, T) -> Void) -> @Sendable (T) -> Void {
        let b = bound
        return { value in
            if b.eventLoop.inEventLoop {
                body(b.value, value)
            } else {
                b.eventLoop.execute { body(b.value, value) }
            }
        }
    }
}
