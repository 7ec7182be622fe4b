import Logging
import NBDProtocol
import NIOCore
import NIOSSL
import NIOTLS

/// One NBD connection, as SwiftNIO glue around pure state machines: the
/// handshake (``NBDServerHandshake``), then the transmission phase
/// (``NBDTransmission``), whose actions this handler carries out — requests go
/// to the ``CommandExecutor``, replies to the channel, reading pauses and
/// resumes, the connection closes. Everything runs on the channel's event loop.
///
/// Memory: every read and write draws its bytes from the server-wide
/// ``ServerMemoryBudget`` when it starts; a write gives them back when it is
/// answered, a read once its reply has been written to the socket (one write
/// promise per flush marks that).
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
    /// Shutdown began before the transmission phase (or the connection was
    /// refused): transmission starts draining.
    var shutdownRequested = false
    /// Where TLS is on this connection.
    var tlsState = TLSState.plain

    enum TLSState {
        case plain
        /// After `NBD_OPT_STARTTLS`, until the TLS handshake completes.
        case handshaking
        case established
    }

    // The transmission phase.
    var session: Session?
    var decoder: NIOSingleStepByteToMessageProcessor<NBDRequestDecoder>?
    private var actions: [NBDTransmission.Action] = []
    /// Set while actions are carried out: a request answered at once then is
    /// queued in `finishedMeanwhile` instead of re-entering the state machine.
    var performing = false
    var finishedMeanwhile: [Int] = []
    private var readPaused = false
    private var readHeld = false
    var inChannelRead = false
    var flushScheduled = false
    var lingerTimer: Scheduled<Void>?

    // The memory budget.
    private let budgetWaiter: Int
    /// Bytes of the budget this connection holds.
    var budgetHeld = 0
    /// Of those, bytes of read replies queued but not yet flushed.
    var heldUntilFlush = 0

    /// What only exists in the transmission phase.
    struct Session {
        var machine: NBDTransmission
        let executor: CommandExecutor
        let export: Export
        let wake: @Sendable () -> Void
        /// Set only when the server has an ``NBDRequestObserver``.
        let timing: RequestTiming?
    }

    init(server: ServerContext, logger: Logger) {
        self.server = server
        self.logger = logger
        handshake = NBDServerHandshake(configuration: server.handshake)
        budgetWaiter = server.memoryBudget.makeWaiterID()
    }

    var bound: NIOLoopBound<NBDConnectionHandler> { NIOLoopBound(self, eventLoop: context.eventLoop) }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelActive(context: ChannelHandlerContext) {
        startHandshake(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if tlsState == .handshaking && phase != .closed {
            logger.warning("client closed the connection during the TLS handshake")
        }
        if let export = session?.export {
            export.statistics.subtract(.activeConnections)
        }
        phase = .closed
        releaseUnflushed()
        handshakeTimer?.cancel()
        lingerTimer?.cancel()
        server.memoryBudget.forget(budgetWaiter)
        server.connectionCount.subtract(1, ordering: .relaxed)
        if let r = registration { server.registry.remove(r) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if tlsState == .handshaking && phase != .closed {
            // A refused client certificate, a wrong PSK, a client that is not TLS:
            // this connection closes, the server and its other clients go on.
            logger.warning("TLS handshake failed; closing: \(error)")
        } else {
            logger.debug("connection error: \(error)")
        }
        close()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event {
            tlsState = .established
            let version = (try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self))?.tlsVersion
            logger[metadataKey: "tls"] = "\(version.map { "\($0)" } ?? "yes")"
            logger.info("TLS handshake completed")
        }
        context.fireUserInboundEventTriggered(event)
    }

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
        session?.executor.commitBatch()
        if flushScheduled { flushReplies() }
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        if readPaused {
            readHeld = true
        } else {
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if phase == .transmission { step { $0.conditionsChanged(&$1, into: &$2) } }
        context.fireChannelWritabilityChanged()
    }

    func close() {
        guard phase != .closed else { return }
        phase = .closed
        releaseUnflushed()
        context.close(promise: nil)
    }

    /// Replies that will never be flushed give their memory back.
    private func releaseUnflushed() {
        if heldUntilFlush > 0 { giveBack(heldUntilFlush) }
        heldUntilFlush = 0
    }

    /// Server shutdown: see ``NBDTransmission`` — requests in flight finish, new
    /// ones are answered ESHUTDOWN, and the connection closes once idle and the
    /// client sent NBD_CMD_DISC or the linger
    /// (``ConnectionLimits/shutdownLingerMilliseconds``) is over.
    func beginShutdown() {
        shutdownRequested = true
        switch phase {
        case .handshake:
            handshake.beginShutdown()
            close()
        case .transmission:
            armShutdownLinger()
            step { $0.beginShutdown(&$1, into: &$2) }
        case .closed:
            break
        }
    }

    private func armShutdownLinger() {
        guard lingerTimer == nil else { return }
        let b = bound
        lingerTimer = context.eventLoop.scheduleTask(in: .milliseconds(server.limits.shutdownLingerMilliseconds)) {
            b.value.step { $0.lingerExpired(&$1, into: &$2) }
        }
    }

    // MARK: Transmission

    func enterTransmission(_ export: Export, _ selection: NBDExportSelection) {
        let b = bound
        let executor = CommandExecutor(
            export: export, eventLoop: context.eventLoop, selection: selection,
            allocator: context.channel.allocator, limits: server.limits, sink: self)
        let machine = NBDTransmission(
            limits: executor.requestLimits, maximumInFlightRequests: server.limits.maximumInFlightRequests,
            maximumInFlightBytes: server.limits.maximumInFlightBytes)
        session = Session(
            machine: machine, executor: executor, export: export,
            wake: { b.eventLoop.execute { b.value.budgetFreed() } },
            timing: server.observer.map { o in
                RequestTiming(observer: o, export: server.exports.firstIndex { $0 === export } ?? 0)
            })
        decoder = NIOSingleStepByteToMessageProcessor(
            NBDRequestDecoder(maximumPayload: export.maximumPayload),
            maximumBufferSize: nil)
        phase = .transmission
        export.statistics.add(.connections)
        export.statistics.add(.activeConnections)
        logger[metadataKey: "export"] = "\(export.spec.name)"
        logger.info(
            "transmission: structured replies \(selection.structuredReplies), base:allocation \(executor.allocationContext != nil)"
        )
        if shutdownRequested {
            armShutdownLinger()
            step { $0.beginShutdown(&$1, into: &$2) }
        }
    }

    func decode(_ bytes: ByteBuffer) {
        guard let executor = session?.executor else { return }
        inChannelRead = true
        executor.batching = true
        defer {
            inChannelRead = false
            executor.batching = false
        }
        do {
            // `decoder` and `session` are separate properties: the machine is
            // stepped while the decoder is still being accessed.
            try decoder!.process(buffer: bytes) { message in
                self.step { $0.receive(message, &$1, into: &$2) }
            }
        } catch {
            logger.info("closing: \(error)")
            close()
        }
    }

    /// Feeds one event to the transmission state machine and carries out the
    /// actions it returns, in order. An event that arrives while actions are
    /// being carried out (the channel's writability changing inside a write)
    /// only adds its actions; the outer call carries them out.
    func step(_ event: (inout NBDTransmission, inout ConnectionConditions, inout [NBDTransmission.Action]) -> Void) {
        guard phase == .transmission, session != nil else { return }
        var conditions = currentConditions()
        event(&session!.machine, &conditions, &actions)
        budgetHeld = conditions.held
        guard !performing else { return }
        performing = true
        defer { performing = false }
        var i = 0
        while true {
            while i < actions.count {
                perform(actions[i])
                i += 1
            }
            // Requests answered at once while acting re-enter the machine now, in order.
            guard !finishedMeanwhile.isEmpty, phase == .transmission else { break }
            let cost = finishedMeanwhile.removeFirst()
            var c = currentConditions()
            session!.machine.completed(cost: cost, &c, into: &actions)
            budgetHeld = c.held
        }
        actions.removeAll(keepingCapacity: true)
        finishedMeanwhile.removeAll(keepingCapacity: true)
    }

    private func currentConditions() -> ConnectionConditions {
        ConnectionConditions(
            isWritable: context.channel.isWritable, serverShuttingDown: server.shuttingDown.load(ordering: .relaxed),
            budget: server.memoryBudget, waiter: budgetWaiter, wake: session!.wake, held: budgetHeld)
    }

    private func perform(_ action: NBDTransmission.Action) {
        switch action {
        case .execute(let request, let payload, let cost):
            session!.timing?.start(request)
            session!.executor.execute(request, payload: payload, cost: cost)
        case .reject(let cookie, let rejection):
            session!.executor.reject(cookie: cookie, rejection)
        case .pauseReading:
            readPaused = true
        case .resumeReading:
            readPaused = false
            if readHeld {
                readHeld = false
                context.read()
            }
        case .close:
            closeAfterReplies()
        }
    }

    /// The budget gave memory back: a request that waited for it may start.
    private func budgetFreed() {
        step { $0.conditionsChanged(&$1, into: &$2) }
    }

    /// Closes once every reply queued so far is on the wire: a plain close()
    /// fails the writes still pending in the channel, so a large read reply the
    /// client has not drained yet would be cut short by NBD_CMD_DISC or shutdown
    /// (proto.md: the server MUST handle all outstanding requests first). Write
    /// promises complete in order, so an empty write's promise marks the end.
    private func closeAfterReplies() {
        flushReplies()
        let b = bound
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: written)
        written.futureResult.whenComplete { _ in b.value.close() }
    }
}
