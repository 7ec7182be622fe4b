import DMA
import NVMe

/// What the controller keeps of any queue it serves (NVMe Base Specification 2.0,
/// §3.3.1): where it lives, its head and tail, and — once the doorbell buffer is
/// configured (never for the admin queue) — the Shadow Doorbell and EventIdx entries
/// through which the host's doorbell value arrives: an SQ's tail, a CQ's head.
class DeviceQueue {
    let id: UInt16
    let base: UnsafeMutableRawPointer
    let size: Int
    final var head = 0
    final var tail = 0
    /// The Shadow Doorbell entry: the tail of a submission queue, the head of a
    /// completion queue, as the host last wrote it.
    final var shadowDoorbell: SharedWord?
    /// The EventIdx entry: past it, the host also writes the MMIO doorbell (traps).
    final var eventIndex: SharedWord?
    /// EventIdx currently asks the host to trap on its next doorbell write.
    final var armed = false
    /// An out-of-range shadow value already reported (one event per bad value).
    final var invalidShadowValue: Int?

    init(id: UInt16, base: UnsafeMutableRawPointer, size: Int) {
        self.id = id
        self.base = base
        self.size = size
    }
}

/// The controller's view of one submission queue (§3.3.1): how far the controller
/// has consumed it (head) and how far the host says it is filled (tail).
final class DeviceSubmissionQueue: DeviceQueue {
    let completionQueue: DeviceCompletionQueue

    init(id: UInt16, base: UnsafeMutableRawPointer, size: Int, completionQueue: DeviceCompletionQueue) {
        self.completionQueue = completionQueue
        super.init(id: id, base: base, size: size)
    }

    var isEmpty: Bool { head == tail }
}

/// The controller's view of one completion queue (§3.3.1): its tail and phase,
/// the head the host last reported, and the completions held while it is full.
final class DeviceCompletionQueue: DeviceQueue {
    let vector: InterruptVector
    let interruptsEnabled: Bool
    var phase = true
    var attachedSubmissionQueues = 0
    /// Completions waiting for room, oldest first (from `backlogStart`).
    var backlog: [CompletionQueueEntry] = []
    var backlogStart = 0
    /// Completions posted since the last interrupt was raised.
    var unsignalled = 0

    init(id: UInt16, base: UnsafeMutableRawPointer, size: Int, vector: InterruptVector, interruptsEnabled: Bool) {
        self.vector = vector
        self.interruptsEnabled = interruptsEnabled
        super.init(id: id, base: base, size: size)
    }

    var isFull: Bool { (tail + 1) % size == head }
    var backlogCount: Int { backlog.count - backlogStart }

    /// Writes `entry` at the tail with the current phase: DW0–DW2 first, then DW3
    /// (which holds the phase tag) with release ordering, so a host that sees the new
    /// phase sees the whole entry. The caller checked the queue is not full.
    func post(_ entry: CompletionQueueEntry) {
        var e = entry
        e.phase = phase
        // `base` covers `size` entries of 16 bytes (checked at creation); tail < size.
        let slot = base + tail * CompletionQueueEntry.size
        slot.storeBytes(of: e.dw0.littleEndian, toByteOffset: 0, as: UInt32.self)
        slot.storeBytes(of: e.dw1.littleEndian, toByteOffset: 4, as: UInt32.self)
        slot.storeBytes(of: e.dw2.littleEndian, toByteOffset: 8, as: UInt32.self)
        SharedWord(slot + 12).storeRelease(e.dw3.littleEndian)
        tail += 1
        if tail == size {
            tail = 0
            phase.toggle()
        }
        unsignalled += 1
    }
}
