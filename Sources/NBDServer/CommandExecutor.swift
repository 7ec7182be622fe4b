import ByteBufferDMA
import DMA
import NBDProtocol
import NIOCore
import NVMe
import NVMeHost

/// Where a connection's replies go.
protocol ReplySink: AnyObject {
    /// Queues a reply buffer for writing.
    func send(_ buffer: ByteBuffer)
    /// The request started with `cost` bytes of the memory budget is answered:
    /// its whole reply has been queued with ``send(_:)``.
    func requestFinished(_ request: NBDRequest, cost: Int)
}

/// Turns the requests a connection's ``NBDTransmission`` lets through into NVMe
/// commands on the queue pair of the connection's event loop, and their
/// completions into replies (the invoker of swift-nio-extras' NIONFS3, with the
/// channel handler as thin glue). It owns the queue pair and every DMA mapping
/// of a request; requests were validated before they get here
/// (``NBDRequestValidation``). Everything runs on `eventLoop`; completions are
/// delivered there (after a controller reset they may come from another thread
/// and hop over).
///
/// proto.md "Request types"; README, "The data path".
final class CommandExecutor {
    let export: Export
    let queuePair: QueuePair
    let replies: ReplyBuilder
    /// The `base:allocation` context ID, when negotiated.
    let allocationContext: UInt32?
    let limits: ConnectionLimits
    let eventLoop: any EventLoop
    let sink: any ReplySink
    /// Set while the connection processes bytes read from the socket: doorbells
    /// are rung once for the whole batch by ``commitBatch()``.
    var batching = false
    private var submittedInBatch = false

    init(
        export: Export, eventLoop: any EventLoop, selection: NBDExportSelection, allocator: ByteBufferAllocator,
        limits: ConnectionLimits, sink: any ReplySink
    ) {
        self.export = export
        self.eventLoop = eventLoop
        self.limits = limits
        self.sink = sink
        queuePair = export.queuePair(for: eventLoop)
        replies = ReplyBuilder(structured: selection.structuredReplies, allocator: allocator)
        allocationContext = selection.metaContexts.first { $0.name == NBDAllocationState.contextName }?.id
    }

    /// What a request is validated against on this connection.
    var requestLimits: NBDRequestLimits {
        NBDRequestLimits(
            exportSize: export.size, readOnly: export.spec.readOnly, structuredReplies: replies.structured,
            metaContextNegotiated: allocationContext != nil, maximumPayload: export.maximumPayload)
    }

    // MARK: Requests

    /// Carries out a validated request; its reply goes to the sink.
    func execute(_ r: NBDRequest, payload: ByteBuffer?, cost: Int) {
        let stats = export.statistics
        switch r.type {
        case .read:
            stats.add(.reads)
            read(r, cost: cost)
        case .write:
            stats.add(.writes)
            write(r, payload ?? ByteBuffer(), cost: cost)
        case .flush:
            stats.add(.flushes)
            queuePair.flush(
                deferDoorbell: batching, completion: onLoop { e, result in e.finish(r, result, cost: cost) })
            noteSubmitted()
        case .trim:
            stats.add(.trims)
            trim(r)
        case .writeZeroes:
            stats.add(.writeZeroes)
            writeZeroes(r)
        case .cache:
            stats.add(.caches)
            cache(r)
        case .blockStatus:
            stats.add(.blockStatus)
            blockStatus(r)
        default:
            answer(r, .einval, "unknown command \(r.type.rawValue)", cost: cost)
        }
    }

    /// Answers a request refused before any work.
    func reject(cookie: UInt64, _ rejection: NBDRequestRejection) {
        export.statistics.add(.errors)
        sink.send(replies.status(cookie, rejection.errno, message: rejection.message))
    }

    /// Rings the doorbells of everything submitted in this batch and, on a
    /// shallow queue, polls for completions a moment before waiting for an
    /// interrupt.
    func commitBatch() {
        guard submittedInBatch else { return }
        submittedInBatch = false
        queuePair.commitSubmissions()
        // Shallow queues only: with many commands in flight the interrupt comes
        // soon anyway and polling would take CPU from the controller.
        if limits.completionPollNanoseconds > 0 && queuePair.outstandingCount <= limits.completionPollDepth {
            queuePair.pollCompletions(nanoseconds: limits.completionPollNanoseconds)
        }
    }

    // MARK: Completion

    func noteSubmitted() {
        if batching { submittedInBatch = true }
    }

    /// Answers `r` with a status and no data.
    func answer(_ r: NBDRequest, _ errno: NBDErrno, _ message: String = "", cost: Int) {
        if errno != .success { export.statistics.add(.errors) }
        sink.send(replies.status(r.cookie, errno, message: message))
        sink.requestFinished(r, cost: cost)
    }

    /// Answers `r` from an NVMe result.
    func finish(_ r: NBDRequest, _ result: Result<Void, NVMeError>, cost: Int) {
        switch result {
        case .success:
            answer(r, .success, cost: cost)
        case .failure(let e):
            let write = r.type == .write || r.type == .writeZeroes || r.type == .trim || r.type == .flush
            answer(r, NBDErrno(e, write: write), e.description, cost: cost)
        }
    }

    /// Arena pages for `bytes`, or `nil` after answering `r` with ENOMEM.
    func arenaBuffer(_ bytes: Int, for r: NBDRequest, cost: Int) -> DMABuffer? {
        if let b = DMABuffer(memory: export.memory, byteCount: bytes) { return b }
        answer(r, .enomem, "no DMA memory for \(bytes) bytes", cost: cost)
        return nil
    }

    /// A completion callback that runs `body` on the event loop.
    func onLoop<T: Sendable>(_ body: @escaping @Sendable (CommandExecutor, T) -> Void) -> @Sendable (T) -> Void {
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        return { value in
            if bound.eventLoop.inEventLoop {
                body(bound.value, value)
            } else {
                bound.eventLoop.execute { body(bound.value, value) }
            }
        }
    }

    func span(_ r: NBDRequest) -> NBDBlockSpan {
        NBDBlockSpan(offset: r.offset, length: UInt64(r.length), blockShift: export.blockShift)
    }
}
