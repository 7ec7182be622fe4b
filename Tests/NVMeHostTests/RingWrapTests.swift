import DMA
import NVMe
import NVMeController
import NVMeHost
import TestSupport
import Testing

/// Tiny queues wrap thousands of times: the phase tag flips on every wrap of the
/// CQ, and neither side may lose or invent an entry. Each operation writes one
/// block and reads it back; `chains` operations run at once (more than the queue
/// holds, so some wait for a slot).
final class WrapWorkload: @unchecked Sendable {
    let qp: QueuePair
    let chains: Int
    let operations: Int
    private let state = Shared<(done: Int, mismatches: Int, failures: Int)>((0, 0, 0))
    private var writeBuffers: [DMABuffer] = []
    private var readBuffers: [DMABuffer] = []

    init(qp: QueuePair, memory: HostMemory, chains: Int, operations: Int) {
        self.qp = qp
        self.chains = chains
        self.operations = operations
        for _ in 0..<chains {
            writeBuffers.append(DMABuffer(memory: memory, byteCount: 512)!)
            readBuffers.append(DMABuffer(memory: memory, byteCount: 512)!)
        }
    }

    var done: Int { state.value.done }
    var mismatches: Int { state.value.mismatches }
    var failures: Int { state.value.failures }

    func start() {
        for c in 0..<chains { operation(c) }
    }

    /// Operation `op` belongs to chain `op % chains`; each chain has its own LBAs.
    private func operation(_ op: Int) {
        guard op < operations else { return }
        let chain = op % chains
        let lba = UInt64(chain * 16 + (op / chains) % 16)
        let expected = pattern(lba: lba, count: 512, version: UInt64(op))
        let w = writeBuffers[chain], r = readBuffers[chain]
        expected.withUnsafeBytes { w.copyIn(from: $0) }
        qp.transfer(.write(from: w), lba: lba, blocks: 1) { [self] result in
            guard (try? result.get()) != nil else { return finish(op, ok: false, same: true) }
            qp.transfer(.read(into: r), lba: lba, blocks: 1) { [self] result in
                guard (try? result.get()) != nil else { return finish(op, ok: false, same: true) }
                let same = r.bytes() == expected
                finish(op, ok: true, same: same)
            }
        }
    }

    private func finish(_ op: Int, ok: Bool, same: Bool) {
        state.withLock {
            $0.done += 1
            if !ok { $0.failures += 1 }
            if !same { $0.mismatches += 1 }
        }
        operation(op + chains)
    }
}

@Suite(.timeLimit(.minutes(30))) struct RingWrapTests {
    /// 2, 3, 4 and one random depth, drawn from a fresh seed: its cases print that
    /// seed, so `NVME_NBD_TEST_SEED` replays the depth and the steps.
    static let depthSeed = TestSeed.fresh(0x7772_6170)
    static let depths: [Int] = {
        var rng = depthSeed.generator()
        return [2, 3, 4, Int.random(in: 5...24, using: &rng)]
    }()

    /// The seed of a case: fixed for the fixed depths, from the run seed for the random one.
    static func seed(depth: Int, shadow: Bool) -> TestSeed {
        let fixed = UInt64(depth) << 1 | (shadow ? 1 : 0)
        return depth <= 4 ? .fixed(fixed) : .fresh(fixed)
    }

    static let operations = 5_100  // two commands each: > 10 000 commands

    @Test(arguments: depths, [true, false])
    func steppedWraps(depth: Int, shadow: Bool) throws {
        let rig = try Rig(.stepped(depth: depth, shadow: shadow))
        defer { rig.close() }
        let w = WrapWorkload(qp: rig.qp, memory: rig.memory, chains: depth + 2, operations: Self.operations)
        let seed = Self.seed(depth: depth, shadow: shadow)
        var rng = seed.generator()
        w.start()
        var idle = 0, last = 0
        while w.done < Self.operations && idle < 10_000 {  // stop when nothing moves any more
            idle = w.done == last ? idle + 1 : 0
            last = w.done
            switch rng.next() % 4 {
            case 0: rig.controller.step()
            case 1: rig.controller.runUntilIdle()
            default: rig.qp.processCompletions()
            }
        }
        check(w, rig, depth: depth, seed: seed)
    }

    @Test(arguments: depths, [true, false])
    func threadedWraps(depth: Int, shadow: Bool) async throws {
        var c = Rig.Config()
        c.shadow = shadow
        c.depth = depth
        let rig = try Rig(c)
        defer { rig.close() }
        let w = WrapWorkload(qp: rig.qp, memory: rig.memory, chains: depth + 2, operations: Self.operations)
        w.start()
        let seed = Self.seed(depth: depth, shadow: shadow)
        #expect(
            await eventually(40) { w.done == Self.operations },
            "stalled at \(w.done) of \(Self.operations), \(seed)")
        check(w, rig, depth: depth, seed: seed)
    }

    private func check(
        _ w: WrapWorkload, _ rig: Rig, depth: Int, seed: TestSeed,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(w.done == Self.operations, "\(seed)", sourceLocation: sourceLocation)
        #expect(w.failures == 0, "\(seed)", sourceLocation: sourceLocation)
        #expect(w.mismatches == 0, "\(seed)", sourceLocation: sourceLocation)
        let h = rig.qp.counters.snapshot()
        #expect(h[.commandsSubmitted] == UInt64(2 * Self.operations), "\(seed)", sourceLocation: sourceLocation)
        #expect(h[.completionsReaped] == h[.commandsSubmitted], "\(seed)", sourceLocation: sourceLocation)
        #expect(h[.waitsForSlot] > 0, "\(seed)", sourceLocation: sourceLocation)
        // Thousands of wraps for the small depths.
        #expect(Int(h[.completionsReaped]) / depth >= 400, "\(seed)", sourceLocation: sourceLocation)
        let d = rig.controller.counters.snapshot()
        #expect(
            d[.reads] == UInt64(Self.operations) && d[.writes] == UInt64(Self.operations), "\(seed)",
            sourceLocation: sourceLocation)
        #expect(d[.commandErrors] == 0, "\(seed)", sourceLocation: sourceLocation)
        #expect(d[.invalidDoorbellWrites] == 0, "\(seed)", sourceLocation: sourceLocation)
        #expect(rig.qp.outstandingCount == 0, "\(seed)", sourceLocation: sourceLocation)
    }
}
