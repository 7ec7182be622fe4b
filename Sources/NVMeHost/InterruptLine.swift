import DMA
import PCIe
import Synchronization

/// The host's end of one MSI-X vector, as a CPU's interrupt handler sees it
/// (Linux `nvme_irq` with its queue's `cq_poll_lock`): a message from the device
/// schedules the reaping unless it is already scheduled — messages arriving
/// meanwhile are merged, since the reap takes every completion it finds. The
/// "scheduled" state lives here, on the host; the device sends a message per
/// signalled batch and knows nothing of it.
///
/// Acknowledge before reaping (``QueuePair/processCompletions()`` does), so a
/// completion posted after the reap sends a message that schedules it again.
final class InterruptLine: Sendable {
    let vector: Int
    private let scheduled = Atomic<Bool>(false)
    let counters: HostCounters

    init(vector: Int, counters: HostCounters) {
        self.vector = vector
        self.counters = counters
    }

    /// A message arrived (on the device's thread). Returns whether the handler
    /// must run; `false` when it is already scheduled (merged).
    func message() -> Bool {
        if scheduled.exchange(true, ordering: .acquiringAndReleasing) {
            counters.add(.interruptsMerged)
            return false
        }
        return true
    }

    /// The handler is about to reap: later messages schedule it again. The
    /// exchange pairs with the one in ``message()``, so every completion posted
    /// before a merged message is visible to the reap that follows.
    func acknowledge() {
        _ = scheduled.exchange(false, ordering: .acquiringAndReleasing)
    }
}
