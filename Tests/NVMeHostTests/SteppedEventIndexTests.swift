import ConcurrencyHelpers
import DMA
import NVMe
import NVMeController
import NVMeHost
import TestSupport
import Testing

/// The controller driven by the test, no thread: the host must trap exactly when
/// EventIdx says so, and whenever the controller has parked the next doorbell
/// write must trap (no lost wake-up).
@Suite struct SteppedEventIndexTests {
    /// 20 000 steps per case of synchronous driver and controller work: on a thread
    /// of its own (`checkOnOwnThread`), so the cooperative pool stays free.
    @Test(arguments: [2, 4, 8, 64], EventIndexPolicy.allCases)
    func hostTrapsExactlyWhenEventIdxSaysSo(depth: Int, policy: EventIndexPolicy) async throws {
        try await checkOnOwnThread { findings in
            try Self.hostTrapsExactlyWhenEventIdxSaysSo(depth: depth, policy: policy, &findings)
        }
    }

    static func hostTrapsExactlyWhenEventIdxSaysSo(depth: Int, policy: EventIndexPolicy, _ findings: inout Findings)
        throws
    {
        var c = Rig.Config.stepped(depth: depth)
        c.controller.eventIndexPolicy = policy
        let rig = try Rig(c)
        defer { rig.close() }
        findings.check(rig.driver.shadowDoorbellsEnabled, "shadow doorbells off")
        let qp = rig.qp
        guard let (shadowPage, eiPage) = rig.driver.doorbellBufferAddresses,
            let sqShadow = rig.memory.word(at: shadowPage + 8),  // SQ 1 tail: 2*1*4
            let sqEI = rig.memory.word(at: eiPage + 8),
            let cqShadow = rig.memory.word(at: shadowPage + 12),  // CQ 1 head: (2*1+1)*4
            let cqEI = rig.memory.word(at: eiPage + 12)
        else {
            findings.check(false, "no doorbell buffer words")
            return
        }

        let seed = TestSeed.fixed(UInt64(depth) &+ (policy == .qemu ? 1000 : 0))
        var rng = seed.generator()
        var parked = false
        var submitted = 0, completed = 0, traps = 0, parkedSubmissions = 0, cqTraps = 0
        let box = Counter()
        let failedFlushes = Counter()
        for _ in 0..<20_000 {
            switch rng.next() % 8 {
            case 0...3:
                guard qp.outstandingCount < depth - 1 else { continue }
                let old = UInt16(sqShadow.loadRelaxed())
                let ei = UInt16(sqEI.loadRelaxed())
                let before = qp.counters.snapshot()[.sqMMIODoorbellWrites]
                qp.submit(SubmissionQueueEntry(opcode: IOOpcode.flush.rawValue, namespaceIdentifier: 1)) { e in
                    if !e.status.isSuccess { failedFlushes.bump() }
                    box.bump()
                }
                submitted += 1
                let new = UInt16(sqShadow.loadRelaxed())
                findings.check(Int(new) == (Int(old) + 1) % depth, "\(seed)")
                let trapped = qp.counters.snapshot()[.sqMMIODoorbellWrites] - before
                let expected = EventIndex.needsEvent(eventIndex: ei, new: new, old: old)
                findings.check(trapped == (expected ? 1 : 0), "old \(old) new \(new) ei \(ei), \(seed)")
                if trapped == 1 { traps += 1 }
                if parked {
                    // The controller is asleep: this submission must have woken it.
                    findings.check(
                        trapped == 1, "lost wake-up: parked controller, no trap (old \(old) ei \(ei)), \(seed)")
                    parkedSubmissions += 1
                    parked = false
                }
            case 4, 5:
                rig.controller.step()
                parked = false
            case 6:
                if rig.controller.runUntilIdle() {
                    // Parking is only allowed with every submission consumed.
                    guard let state = rig.controller.submissionQueueState(1) else {
                        findings.check(false, "no state for SQ 1, \(seed)")
                        return
                    }
                    findings.check(state.head == Int(sqShadow.loadRelaxed()), "parked with work pending, \(seed)")
                    findings.check(state.head == state.tail, "\(seed)")
                    parked = true
                }
            default:
                let old = UInt16(cqShadow.loadRelaxed())
                let ei = UInt16(cqEI.loadRelaxed())
                let before = qp.counters.snapshot()[.cqMMIODoorbellWrites]
                let n = qp.processCompletions()
                completed += n
                let new = UInt16(cqShadow.loadRelaxed())
                let trapped = qp.counters.snapshot()[.cqMMIODoorbellWrites] - before
                if n > 0 {
                    let expected = EventIndex.needsEvent(eventIndex: ei, new: new, old: old)
                    findings.check(trapped == (expected ? 1 : 0), "CQ old \(old) new \(new) ei \(ei), \(seed)")
                    cqTraps += Int(trapped)
                } else {
                    findings.check(trapped == 0, "\(seed)")
                }
            }
        }
        // Drain.
        while qp.outstandingCount > 0 {
            rig.controller.runUntilIdle()
            completed += qp.processCompletions()
        }
        findings.check(box.value == submitted, "\(seed)")
        findings.check(failedFlushes.value == 0, "\(failedFlushes.value) flushes failed, \(seed)")
        // QEMU's policy traps on every submission batch, so at depth 2 (one command
        // at a time) on every submission.
        findings.check(traps > 0 && (traps < submitted || policy == .qemu), "traps \(traps) of \(submitted), \(seed)")
        findings.check(parkedSubmissions > 0, "\(seed)")
        let stats = rig.controller.counters.snapshot()
        findings.check(stats[.flushes] == UInt64(submitted), "\(seed)")
        findings.check(stats[.mmioSQTailDoorbellWrites] == UInt64(traps), "\(seed)")
    }

    /// The two policies differ where they should: with the controller awake and
    /// batches coming one after another, SPDK's never asks for a trap, QEMU's asks
    /// once per submission batch and once per consumed completion batch.
    @Test(arguments: EventIndexPolicy.allCases)
    func policiesDifferWhileAwake(policy: EventIndexPolicy) throws {
        var c = Rig.Config.stepped(depth: 64)
        c.controller.eventIndexPolicy = policy
        let rig = try Rig(c)
        defer { rig.close() }
        let qp = rig.qp
        for _ in 0..<50 {
            for _ in 0..<4 {
                qp.submit(
                    SubmissionQueueEntry(opcode: IOOpcode.flush.rawValue, namespaceIdentifier: 1), deferDoorbell: true
                ) { _ in }
            }
            qp.commitSubmissions()
            rig.controller.step()  // awake: never parks
            qp.processCompletions()
        }
        let h = qp.counters.snapshot()
        switch policy {
        case .spdk:
            #expect(h[.sqMMIODoorbellWrites] == 0 && h[.cqMMIODoorbellWrites] == 0)
        case .qemu:
            #expect(h[.sqMMIODoorbellWrites] == 50, "one SQ trap per batch: \(h[.sqMMIODoorbellWrites])")
            #expect(h[.cqMMIODoorbellWrites] == 50, "one CQ trap per batch: \(h[.cqMMIODoorbellWrites])")
        }
        while qp.outstandingCount > 0 {
            rig.controller.runUntilIdle()
            qp.processCompletions()
        }
    }

    /// With MMIO doorbells only, every submission traps.
    @Test func mmioModeTrapsEveryTime() throws {
        let rig = try Rig(.stepped(depth: 8, shadow: false))
        defer { rig.close() }
        #expect(!rig.driver.shadowDoorbellsEnabled)
        for _ in 0..<100 {
            rig.qp.submit(SubmissionQueueEntry(opcode: IOOpcode.flush.rawValue, namespaceIdentifier: 1)) { _ in }
            rig.controller.runUntilIdle()
            rig.qp.processCompletions()
        }
        let h = rig.qp.counters.snapshot()
        #expect(h[.sqMMIODoorbellWrites] == 100)
        #expect(h[.cqMMIODoorbellWrites] == 100)
        #expect(h[.sqShadowDoorbellWrites] == 0)
    }
}

final class Counter: @unchecked Sendable {
    private let lock = ConditionMutex()
    private var n = 0
    func bump() { lock.withLock { n += 1 } }
    var value: Int { lock.withLock { n } }
}
