import NBDProtocol
import NIOCore

/// Replies: queued on the channel, flushed once per event-loop tick, and the
/// memory of read replies given back to the server's budget once written.
extension NBDConnectionHandler {
    /// Writes the replies queued so far; the memory of read replies among them
    /// is given back to the budget once they are written (or fail).
    func flushReplies() {
        flushScheduled = false
        if heldUntilFlush > 0 {
            let bytes = heldUntilFlush
            heldUntilFlush = 0
            let b = bound
            let written = context.eventLoop.makePromise(of: Void.self)
            context.write(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: written)
            written.futureResult.whenComplete { _ in b.value.giveBack(bytes) }
        }
        context.flush()
    }

    func giveBack(_ bytes: Int) {
        budgetHeld -= bytes
        server.memoryBudget.release(bytes)
    }
}

extension NBDConnectionHandler: ReplySink {
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
                if h.flushScheduled { h.flushReplies() }
            }
        }
    }

    func requestFinished(_ request: NBDRequest, cost: Int) {
        session?.timing?.finish(request)
        if cost > 0 {
            if request.type == .read && phase != .closed {
                heldUntilFlush += cost
            } else {
                giveBack(cost)
            }
        }
        if performing {
            finishedMeanwhile.append(cost)
        } else {
            step { $0.completed(cost: cost, &$1, into: &$2) }
        }
    }
}
