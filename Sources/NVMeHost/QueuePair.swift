import ConcurrencyHelpers
import DMA
import NVMe
import PCIe

/// A host submission/completion queue pair (NVMe Base Specification 2.0, §3.3):
/// what Linux's `struct nvme_queue` is. Many threads and tasks may submit at once;
/// completions are reaped by ``processCompletions()``, which the queue's interrupt
/// arranges to run (an interrupt thread, an event loop, or the caller in tests).
///
/// Command identifiers come from a free list of `depth - 1` slots — a queue of
/// `depth` entries holds at most `depth - 1` commands, so neither ring can
/// overflow — and a command that finds no free slot waits in FIFO order until a
/// completion frees one. Each slot owns one PRP list page; longer transfers chain
/// extra list pages taken at submission.
public final class QueuePair: @unchecked Sendable {
    public let id: UInt16
    /// Entries in each ring.
    public let depth: Int
    public let counters = HostCounters()
    public let namespaces: [NamespaceInfo]
    public let limits: TransferLimits

    let function: any PCIFunction
    let memory: HostMemory
    let interrupt: InterruptLine
    let sq: QueueRing
    let cq: QueueRing
    private let listPages: [UInt64]

    /// Guards everything below. Doorbells are rung with it held, so tail values
    /// reach the controller in order (Linux holds `sq_lock` the same way).
    private let lock = ConditionMutex()
    /// Serialises reaping; completion callbacks run under it, never under `lock`.
    private let reapLock = ConditionMutex()
    private var sqDoorbell: Doorbell
    private var cqDoorbell: Doorbell
    private var tail = 0
    private var head = 0
    private var phase = true
    private var live = false
    private var freeSlots: [UInt16]
    private var slots: [Slot]
    private var waiting: [Pending] = []
    private var waitingStart = 0
    private var unrung = 0
    private var reaped: [(Completion, CompletionQueueEntry)] = []

    public typealias Completion = @Sendable (CompletionQueueEntry) -> Void

    /// The data a command moves: pages `first..<first+count` of a buffer, starting
    /// `offset` bytes into the first of them.
    public struct DataPages: Sendable {
        public var buffer: DMABuffer
        public var first: Int
        public var count: Int
        public var offset: Int
        public init(buffer: DMABuffer, first: Int, count: Int, offset: Int = 0) {
            precondition(first >= 0 && count > 0 && first + count <= buffer.pages.count)
            precondition(offset >= 0 && offset < HostMemory.pageSize && offset & 3 == 0, "PRP1 offset \(offset)")
            self.buffer = buffer
            self.first = first
            self.count = count
            self.offset = offset
        }
    }

    private struct Slot {
        var completion: Completion?
        var entry = SubmissionQueueEntry(opcode: 0)
        var data: DataPages?
        var extraListPages: [UInt64] = []
        var retries = 0
        /// ``MonotonicClock`` time of submission (for the driver's command timeout).
        var submittedAt: UInt64 = 0
    }

    private struct Pending {
        var entry: SubmissionQueueEntry
        var data: DataPages?
        var completion: Completion
        var retries: Int
    }

    init(
        id: UInt16, depth: Int, function: any PCIFunction, memory: HostMemory, vector: Int,
        namespaces: [NamespaceInfo], limits: TransferLimits
    ) throws(NVMeError) {
        precondition(depth >= 2 && depth <= 65536)
        self.id = id
        self.depth = depth
        self.function = function
        self.memory = memory
        self.interrupt = InterruptLine(vector: vector, counters: counters)
        self.namespaces = namespaces
        self.limits = limits
        let stride = function.read64(bar0: RegisterOffset.cap).doorbellStrideValue
        sqDoorbell = Doorbell(
            function: function, register: RegisterOffset.doorbell(queue: id, completion: false, stride: stride))
        cqDoorbell = Doorbell(
            function: function, register: RegisterOffset.doorbell(queue: id, completion: true, stride: stride))
        let sq = try QueueRing(
            memory: memory, depth: depth, entrySize: SubmissionQueueEntry.size, operation: "allocate SQ \(id)")
        let cq: QueueRing
        do {
            cq = try QueueRing(
                memory: memory, depth: depth, entrySize: CompletionQueueEntry.size, operation: "allocate CQ \(id)")
        } catch {
            sq.free(in: memory)
            throw error
        }
        var lists: [UInt64] = []
        guard memory.allocatePages(depth - 1, into: &lists) else {
            sq.free(in: memory)
            cq.free(in: memory)
            throw NVMeError(
                .outOfDMAMemory(bytes: (depth - 1) * HostMemory.pageSize), operation: "allocate PRP lists \(id)")
        }
        self.sq = sq
        self.cq = cq
        listPages = lists
        freeSlots = (0..<UInt16(depth - 1)).reversed()
        slots = Array(repeating: Slot(), count: depth - 1)
        reaped.reserveCapacity(depth)
    }

    deinit {
        sq.free(in: memory)
        cq.free(in: memory)
        memory.freePages(listPages)
        for s in slots { memory.freePages(s.extraListPages) }
    }

    // MARK: Life cycle (driver only)

    /// Zeroes both rings and starts from tail 0, head 0, phase 1 (after the queues
    /// were created on the device, or re-created after a reset).
    func activate(shadow: (sq: (SharedWord, SharedWord), cq: (SharedWord, SharedWord))?) {
        lock.withLock {
            sq.zero()
            cq.zero()
            tail = 0
            head = 0
            phase = true
            unrung = 0
            sqDoorbell.shadow = shadow?.sq.0
            sqDoorbell.eventIndex = shadow?.sq.1
            cqDoorbell.shadow = shadow?.cq.0
            cqDoorbell.eventIndex = shadow?.cq.1
            live = true
        }
        // Commands that waited through the reset go out now; one that cannot be
        // placed (no PRP list page) fails now, not at some later interrupt.
        var failed: [(Completion, CompletionQueueEntry)] = []
        lock.withLock { dispatchWaiting(failures: &failed) }
        for (c, e) in failed { c(e) }
    }

    /// The controller was reset: the rings are gone. Outstanding commands are put
    /// back at the head of the waiting list to be resubmitted once the queue is live
    /// again (Linux requeues them the same way), unless they already used
    /// `maxRetries`; those complete with `failure`. New submissions wait.
    func deactivate(maxRetries: Int, failure: NVMeStatus) -> Int {
        var failed: [(Completion, CompletionQueueEntry)] = []
        var requeued: [Pending] = []
        lock.withLock {
            live = false
            // The rings are gone with the reset: nothing placed is left to ring, and
            // the queue starts over at 0 when it is created again (a commit arriving
            // before ``activate`` would otherwise hand the new queue the old tail,
            // and the controller would execute stale entries).
            unrung = 0
            tail = 0
            for cid in slots.indices {
                guard let completion = slots[cid].completion else { continue }
                let slot = slots[cid]
                memory.freePages(slot.extraListPages)
                slots[cid] = Slot()
                freeSlots.append(UInt16(cid))
                if slot.retries < maxRetries {
                    requeued.append(
                        Pending(entry: slot.entry, data: slot.data, completion: completion, retries: slot.retries + 1))
                    counters.add(.retries)
                } else {
                    failed.append(
                        (
                            completion,
                            CompletionQueueEntry(
                                submissionQueueHead: 0, submissionQueueIdentifier: id,
                                commandIdentifier: UInt16(cid), phase: false, status: failure)
                        ))
                }
            }
            // Oldest first: lower command ids are not older, so order by nothing better
            // than slot order; then everything that was already waiting.
            waiting = requeued + waiting[waitingStart...]
            waitingStart = 0
        }
        for (c, e) in failed { c(e) }
        return requeued.count
    }

    /// Fails everything outstanding and waiting (driver shutting down).
    func failAll(_ status: NVMeStatus) {
        var failed: [(Completion, CompletionQueueEntry)] = []
        lock.withLock {
            live = false
            for cid in slots.indices {
                guard let completion = slots[cid].completion else { continue }
                memory.freePages(slots[cid].extraListPages)
                slots[cid] = Slot()
                freeSlots.append(UInt16(cid))
                failed.append(
                    (
                        completion,
                        CompletionQueueEntry(
                            submissionQueueHead: 0, submissionQueueIdentifier: id,
                            commandIdentifier: UInt16(cid), phase: false, status: status)
                    ))
            }
            for p in waiting[waitingStart...] {
                failed.append(
                    (
                        p.completion,
                        CompletionQueueEntry(
                            submissionQueueHead: 0, submissionQueueIdentifier: id,
                            commandIdentifier: 0xFFFF, phase: false, status: status)
                    ))
            }
            waiting = []
            waitingStart = 0
        }
        for (c, e) in failed { c(e) }
    }

    // MARK: Submission

    /// Submits one command. `entry`'s command identifier and data pointer are
    /// filled in here. With `deferDoorbell` the tail is written but the doorbell is
    /// rung only by the next submission without it or by ``commitSubmissions()``
    /// (blk-mq's `bd->last` / `commit_rqs`). `completion` runs in the reaping context.
    public func submit(
        _ entry: SubmissionQueueEntry, data: DataPages? = nil, deferDoorbell: Bool = false,
        completion: @escaping Completion
    ) {
        var failure: NVMeStatus?
        lock.withLock {
            counters.add(.commandsSubmitted)
            if live && waitingStart == waiting.count, let cid = freeSlots.popLast() {
                if place(entry, data: data, completion: completion, retries: 0, cid: cid) {
                    if deferDoorbell { unrung += 1 } else { ringSubmissionDoorbell() }
                } else {
                    failure = .dataTransferError
                }
            } else {
                counters.add(.waitsForSlot)
                waiting.append(Pending(entry: entry, data: data, completion: completion, retries: 0))
                // Commands placed with a deferred doorbell must not wait behind this
                // one (it waits for a completion, which needs them rung): ring now,
                // as Linux's blk-mq calls commit_rqs before it stops dispatching.
                if live && unrung > 0 { ringSubmissionDoorbell() }
            }
        }
        if let failure {
            completion(
                CompletionQueueEntry(
                    submissionQueueHead: 0, submissionQueueIdentifier: id,
                    commandIdentifier: 0xFFFF, phase: false, status: failure))
        }
    }

    /// Rings the submission doorbell for commands submitted with `deferDoorbell`.
    public func commitSubmissions() {
        lock.withLock {
            if live && unrung > 0 { ringSubmissionDoorbell() }
        }
    }

    /// Writes the entry at the tail. Under `lock`. Returns `false` (slot given back)
    /// when an extra PRP list page cannot be had.
    private func place(
        _ entry: SubmissionQueueEntry, data: DataPages?, completion: @escaping Completion,
        retries: Int, cid: UInt16
    ) -> Bool {
        var e = entry
        e.commandIdentifier = cid
        var extra: [UInt64] = []
        if let data {
            let needed = PRPList.listPagesNeeded(forDataPages: data.count)
            if needed > 1 {
                guard memory.allocatePages(needed - 1, into: &extra) else {
                    freeSlots.append(cid)
                    return false
                }
            }
            let pages = data.buffer.pages[data.first..<(data.first + data.count)]
            if needed > 1 {
                (e.prp1, e.prp2) = PRPList.build(
                    pages: pages, listPages: [listPages[Int(cid)]] + extra, memory: memory,
                    firstOffset: data.offset)
            } else {
                // The common case (at most one list page): no array for the list.
                (e.prp1, e.prp2) = PRPList.build(
                    pages: pages, listPages: CollectionOfOne(listPages[Int(cid)]),
                    memory: memory, firstOffset: data.offset)
            }
        }
        slots[Int(cid)] = Slot(
            completion: completion, entry: entry, data: data, extraListPages: extra, retries: retries,
            submittedAt: MonotonicClock.nanoseconds())
        // The SQ covers `depth` entries and tail < depth.
        e.encode(
            into: UnsafeMutableRawBufferPointer(
                start: sq.entry(tail),
                count: SubmissionQueueEntry.size))
        tail += 1
        if tail == depth { tail = 0 }
        return true
    }

    /// Under `lock`.
    private func ringSubmissionDoorbell() {
        unrung = 0
        let trapped = sqDoorbell.ring(UInt16(truncatingIfNeeded: tail))
        if sqDoorbell.isShadowed { counters.add(.sqShadowDoorbellWrites) }
        if trapped { counters.add(.sqMMIODoorbellWrites) }
    }

    /// Under `lock`: moves waiting commands into free slots; the completions of
    /// those that cannot be placed go to `failures`, for the caller to run
    /// outside the lock.
    private func dispatchWaiting(failures: inout [(Completion, CompletionQueueEntry)]) {
        guard live else { return }
        var placed = false
        while waitingStart < waiting.count, let cid = freeSlots.popLast() {
            let p = waiting[waitingStart]
            waitingStart += 1
            if place(p.entry, data: p.data, completion: p.completion, retries: p.retries, cid: cid) {
                placed = true
            } else {
                failures.append(
                    (
                        p.completion,
                        CompletionQueueEntry(
                            submissionQueueHead: 0, submissionQueueIdentifier: id, commandIdentifier: 0xFFFF,
                            phase: false, status: .dataTransferError)
                    ))
            }
        }
        if waitingStart == waiting.count {
            waiting.removeAll(keepingCapacity: true)
            waitingStart = 0
        }
        if placed || unrung > 0 { ringSubmissionDoorbell() }
    }

    // MARK: Completion

    /// The interrupt handler (Linux `nvme_irq` → `nvme_poll_cq`): acknowledges the
    /// vector, reaps every entry whose phase tag matches, updates the CQ head through
    /// the doorbell (shadow + EventIdx check, or MMIO), dispatches commands that
    /// waited for a slot, then runs the completions. Returns how many it reaped.
    @discardableResult
    public func processCompletions() -> Int {
        reapLock.lock()
        defer { reapLock.unlock() }
        interrupt.acknowledge()
        counters.add(.interruptsHandled)
        var done = 0
        var batch: [(Completion, CompletionQueueEntry)] = []
        lock.withLock {
            while true {
                // The CQ covers `depth` entries of 16 bytes and head < depth.
                let slot = cq.entry(head)
                let dw3 = UInt32(littleEndian: SharedWord(slot + 12).loadAcquire())
                guard (dw3 & (1 << 16) != 0) == phase else { break }
                let entry = CompletionQueueEntry(
                    dw0: UInt32(littleEndian: slot.load(fromByteOffset: 0, as: UInt32.self)),
                    dw1: UInt32(littleEndian: slot.load(fromByteOffset: 4, as: UInt32.self)),
                    dw2: UInt32(littleEndian: slot.load(fromByteOffset: 8, as: UInt32.self)),
                    dw3: dw3)
                head += 1
                if head == depth {
                    head = 0
                    phase.toggle()
                }
                done += 1
                let cid = Int(entry.commandIdentifier)
                guard cid < slots.count, let completion = slots[cid].completion else { continue }
                memory.freePages(slots[cid].extraListPages)
                slots[cid] = Slot()
                freeSlots.append(UInt16(cid))
                if !entry.status.isSuccess { counters.add(.errors) }
                reaped.append((completion, entry))
            }
            if done > 0 {
                let trapped = cqDoorbell.ring(UInt16(truncatingIfNeeded: head))
                if cqDoorbell.isShadowed { counters.add(.cqShadowDoorbellWrites) }
                if trapped { counters.add(.cqMMIODoorbellWrites) }
                counters.add(.completionsReaped, UInt64(done))
            }
            if waitingStart < waiting.count { dispatchWaiting(failures: &reaped) }
            // Taken under `lock`, the lock every writer of `reaped` holds.
            swap(&batch, &reaped)
        }
        // Callbacks outside `lock` (they may submit).
        for (c, e) in batch { c(e) }
        // Hand the emptied array back (keeping its capacity: no allocation per reap).
        batch.removeAll(keepingCapacity: true)
        lock.withLock { if reaped.isEmpty { swap(&batch, &reaped) } }
        return done
    }

    /// Polls the completion queue for up to `nanoseconds`, reaping as soon as an
    /// entry appears (a polled completion, as Linux's `nvme_poll`). The vector
    /// stays unmasked: masking and unmasking it are two MSI-X table writes, two
    /// traps (VM exits) per poll, far dearer than the rare interrupt that arrives
    /// meanwhile and schedules a reap that finds little or nothing. Returns the
    /// entries reaped.
    @discardableResult
    public func pollCompletions(nanoseconds: UInt64) -> Int {
        let deadline = MonotonicClock.nanoseconds() &+ nanoseconds
        while true {
            if completionPending { return processCompletions() }
            if MonotonicClock.nanoseconds() > deadline { return 0 }
        }
    }

    /// Sets or clears the Mask Bit of this queue's MSI-X vector: a BAR write, so a
    /// trap (PCI Local Bus Specification 3.0, §6.8.2.9). While masked the device
    /// holds its messages and sends one on unmask.
    public func maskInterrupt(_ masked: Bool) {
        function.write32(bar0: function.msix.vectorControl(interrupt.vector), masked ? MSIXTable.maskBit : 0)
    }

    /// Whether the entry at the CQ head carries the current phase (a new completion).
    public var completionPending: Bool {
        lock.withLock {
            // The CQ covers `depth` entries and head < depth.
            let dw3 = UInt32(littleEndian: SharedWord(cq.entry(head) + 12).loadAcquire())
            return (dw3 & (1 << 16) != 0) == phase
        }
    }

    /// How long the oldest command in flight has been outstanding, in nanoseconds
    /// (0 when none is).
    public var oldestOutstandingNanoseconds: UInt64 {
        lock.withLock {
            guard freeSlots.count < slots.count else { return 0 }
            let now = MonotonicClock.nanoseconds()
            var oldest: UInt64 = 0
            for s in slots where s.completion != nil { oldest = max(oldest, now &- s.submittedAt) }
            return oldest
        }
    }

    /// Commands in flight plus waiting (tests, shutdown).
    public var outstandingCount: Int {
        lock.withLock { (depth - 1 - freeSlots.count) + (waiting.count - waitingStart) }
    }
}

extension UInt64 {
    /// CAP.DSTRD of a CAP register value.
    var doorbellStrideValue: UInt8 { UInt8((self >> 32) & 0xF) }
}
