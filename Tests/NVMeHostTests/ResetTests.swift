import BlockBackends
import DMA
import Foundation
import NVMe
import NVMeController
import NVMeHost
import TestSupport
import Testing

/// Controller resets with commands in flight: requeued and retried, or failed with a
/// typed error once the retries are used up; never lost, never hung.
@Suite(.timeLimit(.minutes(30))) struct ResetTests {
    /// Stepped: commands sit in the SQ (the controller never ran), `reset()` requeues
    /// them and they complete after bring-up with their data.
    @Test(arguments: [true, false])
    func steppedResetRequeuesCommandsTheControllerNeverSaw(shadow: Bool) throws {
        let rig = try Rig(.stepped(depth: 16, shadow: shadow))
        defer { rig.close() }
        let qp = rig.qp
        let done = Shared<[Int: NVMeStatus]>([:])
        var buffers: [DMABuffer] = []
        let n = 20  // 15 in slots, 5 waiting
        for i in 0..<n {
            let b = try #require(DMABuffer(memory: rig.memory, byteCount: 4096))
            pattern(lba: UInt64(i * 8), count: 4096, version: 1).withUnsafeBytes { b.copyIn(from: $0) }
            buffers.append(b)
            qp.transfer(.write(from: b), lba: UInt64(i * 8), blocks: 8) { r in
                done.withLock { $0[i] = (try? r.get()) != nil ? .success : .internalError }
            }
        }
        #expect(qp.outstandingCount == n)
        let requeued = try rig.driver.reset()
        #expect(requeued == 15)
        #expect(qp.counters.snapshot()[.retries] == 15)
        #expect(rig.driver.shadowDoorbellsEnabled == shadow)
        for _ in 0..<100 where done.value.count < n {
            rig.controller.runUntilIdle()
            qp.processCompletions()
        }
        #expect(done.value.count == n)
        #expect(done.value.values.allSatisfy { $0 == .success })
        #expect(qp.outstandingCount == 0)
        let readBack = try #require(DMABuffer(memory: rig.memory, byteCount: n * 4096))
        let ok = Shared(false)
        qp.transfer(.read(into: readBack), lba: 0, blocks: n * 8) { r in ok.withLock { $0 = (try? r.get()) != nil } }
        rig.controller.runUntilIdle()
        qp.processCompletions()
        #expect(ok.value)
        for i in 0..<n {
            expectBytes(
                readBack.bytes(from: i * 4096, count: 4096), pattern(lba: UInt64(i * 8), count: 4096, version: 1),
                "block \(i)")
        }
        #expect(rig.controller.counters.snapshot()[.resets] == 1)
    }

    /// Stepped, with a stream of requests: every completion submits the next request
    /// (from the interrupt handler, as an event loop would). A reset in the middle
    /// requeues what was outstanding; the stream must go on through bring-up —
    /// including submissions made while the driver is still configuring the doorbell
    /// buffer — and every request must complete.
    @Test(arguments: [true, false])
    func steppedResetWithARequestStream(shadow: Bool) throws {
        let rig = try Rig(.stepped(depth: 8, shadow: shadow, interrupts: .custom { qp in qp.processCompletions() }))
        defer { rig.close() }
        let qp = rig.qp
        let chains = 4, perChain = 40
        let stream = RequestStream(qp: qp, memory: rig.memory, chains: chains, perChain: perChain)
        stream.start()
        var resets = 0
        for round in 0..<10_000 {
            if stream.finished == chains * perChain { break }
            if round % 7 == 3 && resets < 5 {
                // Some rounds reset right away, others after a little progress.
                try rig.driver.reset()
                resets += 1
            }
            rig.controller.step()
            // Run to idle only once the resets are done (the stream would finish at once).
            if resets == 5 && round % 3 == 0 { rig.controller.runUntilIdle() }
        }
        #expect(resets == 5)
        #expect(
            stream.finished == chains * perChain,
            "stream stalled: \(stream.finished) of \(chains * perChain), outstanding \(qp.outstandingCount)")
        #expect(stream.failures == 0)
        // Everything reached the namespace.
        let backend = rig.backends[0]
        for chain in 0..<chains where stream.finished == chains * perChain {
            for i in 0..<perChain {
                let lba = RequestStream.lba(chain: chain, index: i)
                var got = [UInt8](repeating: 0, count: 512)
                got.withUnsafeMutableBytes { try? backend.read(at: lba * 512, into: $0) }
                expectBytes(got, pattern(lba: lba, count: 512, version: 7), "chain \(chain) request \(i)")
            }
        }
    }

    /// Threaded: the controller thread is stuck in the backend while writes pile up
    /// (submitted from plain threads: with MMIO doorbells a submitter waits in its
    /// trap until the controller takes it, as a vCPU waits in a VM exit); `reset()`
    /// runs on another thread; the gate opens; every write completes (retried as
    /// needed) and reads back.
    @Test(arguments: [true, false])
    func threadedResetWhileTheControllerIsBusy(shadow: Bool) async throws {
        let outcome = try await resetWithGatedController(shadow: shadow, retries: 5, writes: 200, version: 2)
        #expect(outcome.failures.isEmpty, "\(outcome.failures.prefix(3))")
        #expect(outcome.resetResult == .success(outcome.requeued))
        #expect(outcome.requeued > 0)
        #expect(outcome.retries == UInt64(outcome.requeued))
    }

    /// As above with `maximumRetries = 0`: commands outstanding at the reset fail with
    /// Command Aborted due to SQ Deletion as a typed `NVMeError`; nothing hangs and the
    /// writes that did succeed are on the namespace.
    @Test(arguments: [true, false])
    func retriesExhaustedFailTyped(shadow: Bool) async throws {
        let outcome = try await resetWithGatedController(shadow: shadow, retries: 0, writes: 120, version: 3)
        #expect(outcome.resetResult == .success(0), "nothing is requeued without retries")
        #expect(!outcome.failures.isEmpty)
        for e in outcome.failures {
            #expect(e.kind == .status(.commandAbortedSQDeletion), "\(e)")
        }
        #expect(outcome.retries == 0)
    }

    struct GatedResetOutcome {
        var failures: [NVMeError]
        var resetResult: Result<Int, NVMeError>?
        var requeued: Int
        var retries: UInt64
    }

    private func resetWithGatedController(shadow: Bool, retries: Int, writes n: Int, version: UInt64) async throws
        -> GatedResetOutcome
    {
        var c = Rig.Config()
        c.shadow = shadow
        c.depth = 16
        c.retries = retries
        c.backend = { try GatedBackend(MemoryBackend(byteCount: $0)) }
        let rig = try Rig(c)
        defer { rig.close() }
        let gate = try #require(rig.backends[0] as? GatedBackend)
        let qp = rig.qp
        let batch = WriteBatch(qp: qp, memory: rig.memory, count: n, version: version)
        gate.close()
        batch.start(threads: 4)
        #expect(await eventually { gate.blockedCount == 1 })
        if shadow {
            // The controller is awake (EventIdx "never"): nobody traps, the SQ fills and
            // the rest waits for a slot.
            #expect(await eventually { batch.submittedAll && qp.outstandingCount == n })
        } else {
            // Submitters wait in their traps, holding the queue lock: do not take it.
            // Once a second submission has begun (an atomic counter), its command is
            // in a slot before the reset can take the lock to requeue it.
            #expect(await eventually { qp.counters.snapshot()[.commandsSubmitted] >= 2 })
            try await Task.sleep(for: .milliseconds(20))
        }
        let reset = OwnThread { () -> Result<Int, NVMeError> in
            do throws(NVMeError) { return .success(try rig.driver.reset()) } catch { return .failure(error) }
        }
        // The reset's CC.EN = 0 is recorded (the register reads back 0) while its trap
        // waits for the controller thread, which is stuck in the backend.
        #expect(
            await eventually {
                !ControllerConfiguration(raw: rig.controller.read32(bar0: RegisterOffset.cc)).enable
            })
        #expect(reset.finished == nil)
        gate.open()
        let resetResult = await reset.value()
        #expect(resetResult != nil, "reset did not return")
        if !(await eventually(30) { batch.completed == n }) {
            Issue.record("requests hung: \(batch.completed) of \(n) completed, \(qp.outstandingCount) outstanding")
            rig.driver.shutdown()  // fails them
            return GatedResetOutcome(failures: [], resetResult: resetResult, requeued: -1, retries: 0)
        }
        let outcomes = batch.outcomes
        #expect(outcomes.count == n)
        // Every write that succeeded is on the namespace.
        let back = try await qp.read(lba: 0, blocks: n * 8)
        for (i, e) in outcomes where e == nil {
            expectBytes(
                Array(back[(i * 4096)..<((i + 1) * 4096)]), pattern(lba: UInt64(i * 8), count: 4096, version: version),
                "write \(i)")
        }
        // And the queue works afterwards.
        try await qp.write(lba: 0, pattern(lba: 0, count: 512, version: 9))
        expectBytes(try await qp.read(lba: 0, blocks: 1), pattern(lba: 0, count: 512, version: 9))
        #expect(rig.controller.counters.snapshot()[.resets] == 1)
        let requeued = (try? resetResult?.get()) ?? -1
        return GatedResetOutcome(
            failures: outcomes.values.compactMap { $0 }, resetResult: resetResult,
            requeued: requeued, retries: qp.counters.snapshot()[.retries])
    }

    /// Ten resets from a plain thread while nine tasks on three pairs write and read
    /// back their own LBAs: every request completes (retried across the resets) with
    /// the right data.
    @Test(arguments: [true, false])
    func resetsUnderLoad(shadow: Bool) async throws {
        var c = Rig.Config()
        c.shadow = shadow
        c.queuePairs = 3
        c.depth = 8
        let rig = try Rig(c)
        defer { rig.close() }
        let pairs = rig.driver.queuePairs
        let seed = TestSeed.fixed(shadow ? 100 : 0)
        try await guarded(rig, seconds: 40) {
            let stop = Shared(false)
            try await withThrowingTaskGroup(of: Int.self) { group in
                for t in 0..<9 {
                    group.addTask {
                        let qp = pairs[t % 3]
                        var rng = seed.generator(stream: UInt64(t))
                        var n = 0
                        while !stop.value || n < 20 {
                            let lba = UInt64(t * 1024) + rng.next() % 1000
                            let blocks = 1 + Int(rng.next() % 24)
                            let data = randomBytes(blocks * 512, seed: rng.next())
                            try await qp.write(lba: lba, data)
                            expectBytes(
                                try await qp.read(lba: lba, blocks: blocks), data,
                                "task \(t) request \(n), \(seed)")
                            n += 1
                        }
                        return n
                    }
                }
                let resets = OwnThread { () -> Int in
                    var done = 0
                    for _ in 0..<10 {
                        usleep(3000)
                        if (try? rig.driver.reset()) != nil { done += 1 }
                    }
                    return done
                }
                #expect(await resets.value(timeoutSeconds: 30) == 10)
                stop.withLock { $0 = true }
                var total = 0
                for try await n in group { total += n }
                #expect(total >= 9 * 20)
            }
            #expect(rig.controller.counters.snapshot()[.resets] == 10)
            #expect(rig.driver.statistics[.errors] == 0)
            #expect(rig.driver.shadowDoorbellsEnabled == shadow)
        }
    }

    /// CSTS.CFS: commands stop completing; `reset()` recovers and retries them.
    @Test(arguments: [true, false])
    func fatalErrorThenReset(shadow: Bool) async throws {
        var c = Rig.Config()
        c.shadow = shadow
        let rig = try Rig(c)
        defer { rig.close() }
        try await guarded(rig) {
            let qp = rig.qp
            try await qp.write(lba: 0, pattern(lba: 0, count: 4096, version: 1))
            #expect(!rig.driver.controllerFatal)
            rig.controller.injectFatalError()
            #expect(rig.driver.controllerFatal)
            let n = 10
            let completed = Shared(0)
            let before = qp.counters.snapshot()[.completionsReaped]
            let tasks = (0..<n).map { i in
                Task(executorPreference: DedicatedExecutor.shared) {  // as guarded's body: off the pool
                    try await qp.write(
                        lba: UInt64(64 + i * 8), pattern(lba: UInt64(64 + i * 8), count: 4096, version: 4))
                    completed.withLock { $0 += 1 }
                }
            }
            #expect(await eventually { qp.outstandingCount == n })
            try await Task.sleep(for: .milliseconds(50))
            #expect(completed.value == 0)
            #expect(qp.counters.snapshot()[.completionsReaped] == before)
            #expect(rig.driver.controllerFatal)
            let requeued = try rig.driver.reset()
            #expect(requeued == n)
            #expect(!rig.driver.controllerFatal)
            for t in tasks { try await t.value }
            #expect(completed.value == n)
            expectBytes(try await qp.read(lba: 0, blocks: 8), pattern(lba: 0, count: 4096, version: 1))
            let back = try await qp.read(lba: 64, blocks: n * 8)
            for i in 0..<n {
                expectBytes(
                    Array(back[(i * 4096)..<((i + 1) * 4096)]),
                    pattern(lba: UInt64(64 + i * 8), count: 4096, version: 4))
            }
        }
    }
}

/// `chains` sequences of writes; each completion submits the chain's next write.
final class RequestStream: @unchecked Sendable {
    let qp: QueuePair
    let memory: HostMemory
    let chains: Int
    let perChain: Int
    private let state = Shared<(finished: Int, failures: Int)>((0, 0))
    private let buffers: [DMABuffer]

    init(qp: QueuePair, memory: HostMemory, chains: Int, perChain: Int) {
        self.qp = qp
        self.memory = memory
        self.chains = chains
        self.perChain = perChain
        buffers = (0..<chains).map { _ in DMABuffer(memory: memory, byteCount: 512)! }
    }

    static func lba(chain: Int, index: Int) -> UInt64 { UInt64(chain * 1000 + index) }

    var finished: Int { state.value.finished }
    var failures: Int { state.value.failures }

    func start() {
        for c in 0..<chains { next(chain: c, index: 0) }
    }

    private func next(chain: Int, index: Int) {
        guard index < perChain else { return }
        let lba = Self.lba(chain: chain, index: index)
        let b = buffers[chain]
        pattern(lba: lba, count: 512, version: 7).withUnsafeBytes { b.copyIn(from: $0) }
        qp.transfer(.write(from: b), lba: lba, blocks: 1) { [self] r in
            state.withLock {
                $0.finished += 1
                if (try? r.get()) == nil { $0.failures += 1 }
            }
            next(chain: chain, index: index + 1)
        }
    }
}

/// `count` 4 KiB writes (write i at LBA 8*i), submitted from plain threads through
/// the callback API; outcomes recorded as they complete.
final class WriteBatch: @unchecked Sendable {
    let qp: QueuePair
    let count: Int
    private let buffers: [DMABuffer]
    private let state = Shared<(submitted: Int, outcomes: [Int: NVMeError?])>((0, [:]))

    init(qp: QueuePair, memory: HostMemory, count: Int, version: UInt64) {
        self.qp = qp
        self.count = count
        buffers = (0..<count).map { i in
            let b = DMABuffer(memory: memory, byteCount: 4096)!
            pattern(lba: UInt64(i * 8), count: 4096, version: version).withUnsafeBytes { b.copyIn(from: $0) }
            return b
        }
    }

    var submittedAll: Bool { state.value.submitted == count }
    var completed: Int { state.value.outcomes.count }
    var outcomes: [Int: NVMeError?] { state.value.outcomes }

    func start(threads: Int) {
        for t in 0..<threads {
            _ = OwnThread { [self] in
                for i in stride(from: t, to: count, by: threads) {
                    qp.transfer(.write(from: buffers[i]), lba: UInt64(i * 8), blocks: 8) { [self] r in
                        let error: NVMeError?
                        switch r {
                        case .success: error = nil
                        case .failure(let e): error = e
                        }
                        state.withLock { $0.outcomes[i] = .some(error) }
                    }
                    state.withLock { $0.submitted += 1 }
                }
                return true
            }
        }
    }
}
