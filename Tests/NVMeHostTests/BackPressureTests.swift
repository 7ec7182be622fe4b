import DMA
import NVMe
import NVMeController
import NVMeHost
import TestSupport
import Testing

/// A full queue never overruns: the host waits for a slot, the controller holds
/// completions while the completion queue is full.
@Suite(.timeLimit(.minutes(30))) struct BackPressureTests {
    /// One command slot, hundreds of tasks.
    @Test(arguments: [true, false])
    func depthTwoWithHundredsOfTasks(shadow: Bool) async throws {
        var c = Rig.Config()
        c.shadow = shadow
        c.depth = 2
        let rig = try Rig(c)
        defer { rig.close() }
        try await guarded(rig) {
            let qp = rig.qp
            let tasks = 300
            try await withThrowingTaskGroup(of: Void.self) { group in
                for t in 0..<tasks {
                    group.addTask {
                        let blocks = 1 + t % 16
                        let data = randomBytes(blocks * 512, seed: UInt64(t))
                        try await qp.write(lba: UInt64(t * 16), data)
                        let back = try await qp.read(lba: UInt64(t * 16), blocks: blocks)
                        expectBytes(back, data, "task \(t)")
                    }
                }
                try await group.waitForAll()
            }
            let h = qp.counters.snapshot()
            #expect(h[.waitsForSlot] > 100, "waits \(h[.waitsForSlot])")
            #expect(h[.commandsSubmitted] == UInt64(2 * tasks))
            #expect(h[.completionsReaped] == h[.commandsSubmitted])
            #expect(h[.errors] == 0)
            #expect(qp.outstandingCount == 0)
        }
    }

    /// A hand-built queue pair whose completion queue (2 or 3 entries) is much smaller
    /// than its submission queue (64): the controller fetches everything, posts at most
    /// `size - 1` entries, holds the rest, and continues exactly when the host moves
    /// the CQ head — by MMIO, or through the shadow CQ head when the EventIdx the
    /// controller armed makes that update trap.
    @Test(arguments: [2, 3], [false, true])
    func completionQueueSmallerThanSubmissionQueue(cqSize: Int, shadow: Bool) throws {
        var c = Rig.Config.stepped(shadow: false)  // the driver's own pairs stay on MMIO; queue 2 is ours
        c.queuePairs = 2
        let rig = try Rig(c)
        defer { rig.close() }
        let controller = rig.controller
        try rig.driver.adminCommand(
            SubmissionQueueEntry(opcode: AdminOpcode.deleteIOSubmissionQueue.rawValue, cdw10: 2))
        try rig.driver.adminCommand(
            SubmissionQueueEntry(opcode: AdminOpcode.deleteIOCompletionQueue.rawValue, cdw10: 2))
        let q = try HandQueue(rig: rig, qid: 2, sqSize: 64, cqSize: cqSize)

        // Some MMIO traffic first, so the doorbell buffer starts from non-zero values.
        var cid: UInt16 = 0
        for _ in 0..<5 { q.submit(flush(&cid)) }
        #expect(q.ringSQ())
        controller.runUntilIdle()
        var first = q.reap(max: 100).count
        #expect(first == cqSize - 1)
        #expect(controller.heldCompletions(2) == 5 - first)
        #expect(q.ringCQ())
        for _ in 0..<5 {
            controller.step()
            first += q.reap(max: 100).count
            q.ringCQ()
        }
        controller.step()
        #expect(first == 5)
        #expect(controller.heldCompletions(2) == 0)
        var submitted = 5, reaped = 5
        if shadow {
            try q.configureDoorbellBuffer()
            // The controller copied the queue's current tail and head into the shadow page.
            #expect(q.sqShadow?.loadRelaxed() == UInt32(q.tail))
            #expect(q.cqShadow?.loadRelaxed() == UInt32(q.head))
        }

        let seed = TestSeed.fixed(UInt64(cqSize) * 2 + (shadow ? 1 : 0))
        var rng = seed.generator()
        let total = 400
        var seen = Set<UInt16>()
        var heldAtSomePoint = 0
        var idle = 0
        while reaped < total {
            idle += 1
            if idle > 100 {
                Issue.record("no progress: \(submitted) submitted, \(reaped) reaped, \(seed)")
                break
            }
            // Submit a batch the SQ can take (at most 63 commands not yet completed).
            let room = 63 - (submitted - reaped)
            let k = min(room, Int(rng.next() % 48), total - submitted)
            for _ in 0..<k { q.submit(flush(&cid)) }
            submitted += k
            if k > 0 { q.ringSQ() }

            controller.runUntilIdle()
            let sq = try #require(controller.submissionQueueState(2))
            #expect(sq.head == q.tail && sq.tail == q.tail, "the controller fetches everything, \(seed)")
            let visible = q.visibleCompletions()
            let held = try #require(controller.heldCompletions(2))
            #expect(visible <= cqSize - 1, "CQ overrun: \(visible) entries in a \(cqSize)-entry queue, \(seed)")
            #expect(visible + held == submitted - reaped, "\(seed)")
            if held > 0 {
                #expect(visible == cqSize - 1, "\(seed)")
                heldAtSomePoint += 1
            }
            // Nothing moves until the host frees a slot.
            let posted = controller.counters.snapshot()[.completionsPosted]
            controller.runUntilIdle()
            #expect(controller.counters.snapshot()[.completionsPosted] == posted, "\(seed)")
            #expect(controller.heldCompletions(2) == held, "\(seed)")
            if shadow, held > 0 {
                #expect(
                    q.cqEventIndex?.loadRelaxed() == UInt32(q.head),
                    "a full CQ must arm its EventIdx at the head, \(seed)")
            }
            guard visible > 0 else { continue }

            let take = 1 + Int(rng.next() % UInt64(visible))
            let entries = q.reap(max: take)
            idle = 0
            #expect(entries.count == take, "\(seed)")
            for e in entries {
                #expect(e.status.isSuccess, "\(seed)")
                #expect(e.submissionQueueIdentifier == 2, "\(seed)")
                #expect(
                    seen.insert(e.commandIdentifier).inserted,
                    "completion for cid \(e.commandIdentifier) twice, \(seed)")
            }
            reaped += take
            let trapped = q.ringCQ()
            if held > 0 { #expect(trapped, "the head update of a full CQ with held completions must trap, \(seed)") }
            if !shadow { #expect(trapped, "\(seed)") }
            if shadow && held == 0 { #expect(!trapped, "CQ EventIdx not armed, yet the host trapped, \(seed)") }
            // One step later the controller has used exactly the slots freed.
            controller.step()
            let now = controller.counters.snapshot()[.completionsPosted]
            #expect(now - posted == UInt64(min(take, held)), "\(seed)")
            #expect(controller.heldCompletions(2) == held - min(take, held), "\(seed)")
        }
        #expect(submitted == total && reaped == total, "\(seed)")
        #expect(seen.count == total - 5, "\(seed)")
        #expect(heldAtSomePoint > 10, "\(seed)")
        let stats = controller.counters.snapshot()
        #expect(stats[.completionQueueFullStalls] > 0, "\(seed)")
        #expect(stats[.invalidDoorbellWrites] == 0, "\(seed)")
    }

    private func flush(_ cid: inout UInt16) -> SubmissionQueueEntry {
        defer { cid &+= 1 }
        return SubmissionQueueEntry(opcode: IOOpcode.flush.rawValue, commandIdentifier: cid, namespaceIdentifier: 1)
    }
}

/// An I/O queue pair driven by hand: raw SQEs in, raw CQEs out, doorbells by MMIO
/// or through the Shadow Doorbell + EventIdx check.
final class HandQueue {
    let rig: Rig
    let qid: UInt16
    let sqSize: Int
    let cqSize: Int
    let sqAddress: UInt64
    let cqAddress: UInt64
    private let sqBase: UnsafeMutableRawPointer
    private let cqBase: UnsafeMutableRawPointer
    private(set) var tail = 0
    private(set) var head = 0
    private var phase = true
    private(set) var sqShadow: SharedWord?
    private(set) var sqEventIndex: SharedWord?
    private(set) var cqShadow: SharedWord?
    private(set) var cqEventIndex: SharedWord?
    private(set) var sqTraps = 0
    private(set) var cqTraps = 0

    struct Failure: Error { var what: String }

    init(rig: Rig, qid: UInt16, sqSize: Int, cqSize: Int) throws {
        self.rig = rig
        self.qid = qid
        self.sqSize = sqSize
        self.cqSize = cqSize
        guard let sq = rig.memory.allocateContiguous(bytes: sqSize * 64),
            let cq = rig.memory.allocateContiguous(bytes: cqSize * 16)
        else { throw Failure(what: "no memory") }
        sqAddress = sq
        cqAddress = cq
        sqBase = rig.memory.pointer(at: sq, length: sqSize * 64)!
        cqBase = rig.memory.pointer(at: cq, length: cqSize * 16)!
        try rig.driver.adminCommand(
            SubmissionQueueEntry(
                opcode: AdminOpcode.createIOCompletionQueue.rawValue, prp1: cq,
                cdw10: UInt32(cqSize - 1) << 16 | UInt32(qid), cdw11: UInt32(qid) << 16 | 0b11))
        try rig.driver.adminCommand(
            SubmissionQueueEntry(
                opcode: AdminOpcode.createIOSubmissionQueue.rawValue, prp1: sq,
                cdw10: UInt32(sqSize - 1) << 16 | UInt32(qid), cdw11: UInt32(qid) << 16 | 0b1))
    }

    /// Raw Doorbell Buffer Config (7Ch) with two fresh pages; entries at
    /// `2*qid*4` (SQ tail) and `(2*qid+1)*4` (CQ head) with stride 0.
    func configureDoorbellBuffer() throws {
        guard let shadow = rig.memory.allocatePage(), let ei = rig.memory.allocatePage() else {
            throw Failure(what: "no memory")
        }
        rig.memory.write([UInt8](repeating: 0, count: 4096), at: shadow)
        rig.memory.write([UInt8](repeating: 0, count: 4096), at: ei)
        try rig.driver.adminCommand(
            SubmissionQueueEntry(
                opcode: AdminOpcode.doorbellBufferConfig.rawValue,
                prp1: shadow, prp2: ei))
        let sqOffset = UInt64(2 * Int(qid) * 4), cqOffset = UInt64((2 * Int(qid) + 1) * 4)
        sqShadow = rig.memory.word(at: shadow + sqOffset)
        sqEventIndex = rig.memory.word(at: ei + sqOffset)
        cqShadow = rig.memory.word(at: shadow + cqOffset)
        cqEventIndex = rig.memory.word(at: ei + cqOffset)
    }

    func submit(_ e: SubmissionQueueEntry) {
        e.encode(into: UnsafeMutableRawBufferPointer(start: sqBase + tail * 64, count: 64))
        tail = (tail + 1) % sqSize
    }

    /// Returns whether the host trapped.
    @discardableResult
    func ringSQ() -> Bool {
        let t = ring(RegisterOffset.doorbell(queue: qid, completion: false, stride: 0), tail, sqShadow, sqEventIndex)
        if t { sqTraps += 1 }
        return t
    }

    @discardableResult
    func ringCQ() -> Bool {
        let t = ring(RegisterOffset.doorbell(queue: qid, completion: true, stride: 0), head, cqShadow, cqEventIndex)
        if t { cqTraps += 1 }
        return t
    }

    private func ring(_ register: UInt32, _ value: Int, _ shadow: SharedWord?, _ ei: SharedWord?) -> Bool {
        if let shadow, let ei {
            let old = UInt16(truncatingIfNeeded: shadow.loadRelaxed())
            shadow.storeRelease(UInt32(value))
            MemoryFence.full()
            let e = UInt16(truncatingIfNeeded: ei.loadRelaxed())
            guard EventIndex.needsEvent(eventIndex: e, new: UInt16(value), old: old) else { return false }
        }
        rig.controller.write32(bar0: register, UInt32(value))
        return true
    }

    /// Entries posted and not reaped (phase scan, nothing consumed).
    func visibleCompletions() -> Int {
        var h = head, p = phase, n = 0
        while n < cqSize {
            let dw3 = SharedWord(cqBase + h * 16 + 12).loadAcquire()
            guard (dw3 & (1 << 16) != 0) == p else { break }
            n += 1
            h += 1
            if h == cqSize { h = 0; p.toggle() }
        }
        return n
    }

    /// Consumes up to `max` entries (the CQ head doorbell is the caller's).
    func reap(max: Int) -> [CompletionQueueEntry] {
        var out: [CompletionQueueEntry] = []
        while out.count < max {
            let slot = cqBase + head * 16
            let dw3 = SharedWord(slot + 12).loadAcquire()
            guard (dw3 & (1 << 16) != 0) == phase else { break }
            out.append(CompletionQueueEntry(bytes: UnsafeRawBufferPointer(start: slot, count: 16)))
            head += 1
            if head == cqSize { head = 0; phase.toggle() }
        }
        return out
    }
}
