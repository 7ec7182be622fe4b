import DMA
import Foundation
import NVMe
import NVMeController
import NVMeHost
import TestSupport
import Testing

@testable import BlockBackends

/// Asynchronous namespaces (README, "The data path"): every command
/// type through io_uring and through worker threads on a file and on a loop
/// block device, completions in finish order, the in-flight bound, reset with
/// backend work in flight, exact sizes, honest fast zeroing.
@Suite(.timeLimit(.minutes(30))) struct AsyncNamespaceTests {
    /// Where the namespace is stored and how its operations run.
    struct Case: CustomTestStringConvertible, Sendable {
        enum Storage: String, Sendable { case file, loopDevice }
        var storage: Storage
        var io: StorageIO
        var cache: FileCaching
        var testDescription: String { "\(storage.rawValue), \(io), cache=\(cache.rawValue)" }

        static let all: [Case] = [Storage.file, .loopDevice].flatMap { storage in
            [StorageIO.ioUring, .threads(workers: 4)].flatMap { io in
                FileCaching.allCases.map { Case(storage: storage, io: io, cache: $0) }
            }
        }
    }

    /// Whether the kernel lets this process use io_uring (`kernel.io_uring_disabled`).
    static var ioUringAllowed: Bool {
        guard let text = try? String(contentsOfFile: "/proc/sys/kernel/io_uring_disabled", encoding: .utf8) else {
            return true
        }
        return text.trimmingCharacters(in: .whitespacesAndNewlines) == "0"
    }

    @Test("every command type, checked against a model", arguments: Case.all)
    func everyCommand(_ c: Case) async throws {
        let size: UInt64 = 8 << 20
        let file = TemporaryFile(in: "/tmp")
        _ = try FileBackend(path: file.path, createSize: size)
        var loop: LoopDevice? = nil
        var path = file.path
        if c.storage == .loopDevice {
            switch LoopDevice.attach(file.path) {
            case .success(let device): loop = device; path = device.path
            case .failure(let why): try Test.cancel("no loop device: \(why)")
            }
        }
        defer { withExtendedLifetime(loop) {} }
        var config = Rig.Config()
        config.namespaceBytes = size
        config.io = c.io
        config.depth = 256
        let devicePath = path
        config.backend = { _ in try FileBackend(path: devicePath, caching: c.cache) }
        let rig = try Rig(config)
        defer { rig.close() }
        let expectedEngine = c.io == .ioUring && Self.ioUringAllowed ? "io_uring" : "threads"
        #expect(rig.controller.storageEngines == [expectedEngine], "\(rig.controller.storageNotes)")
        let backend = try #require(rig.backends[0] as? FileBackend)
        let seed = TestSeed.fresh(c.testDescription)
        let transfers = try await guarded(rig, seconds: 120) {
            try await Self.exercise(rig.qp, backend: backend, size: Int(size), seed: seed)
        }
        let stats = rig.controller.counters.snapshot()
        // Each Read and Write is one engine operation at least (Flushes may be
        // coalesced, so they are not counted on).
        #expect(stats[.storageOperations] >= UInt64(transfers ?? .max), "the engine ran the commands (\(seed))")
        #expect(stats[.commandErrors] == 0, "\(seed)")
    }

    /// A random mix of every I/O command, then a burst of concurrent writes,
    /// each result compared with a byte model. Ranges a block device's discard
    /// leaves undefined are not compared until written again.
    /// Returns the Reads and Writes it issued.
    static func exercise(_ qp: QueuePair, backend: FileBackend, size: Int, seed: TestSeed) async throws -> Int {
        var rng = seed.generator()
        var transfers = 0
        var model = [UInt8](repeating: 0, count: size)
        var known = [Bool](repeating: true, count: size)
        let blocks = size / 512
        func compare(_ lba: Int, _ data: [UInt8], _ what: String) {
            let start = lba * 512
            for i in 0..<data.count where known[start + i] && data[i] != model[start + i] {
                Issue.record("\(what): byte \(start + i) is \(data[i]), expected \(model[start + i]) (\(seed))")
                return
            }
        }
        for step in 0..<160 {
            let count = Int.random(in: 1...256, using: &rng)
            let lba = Int.random(in: 0...(blocks - count), using: &rng)
            let range = (lba * 512)..<((lba + count) * 512)
            switch Int.random(in: 0..<9, using: &rng) {
            case 0, 1, 2:
                let data = randomBytes(count * 512, seed: rng.next())
                try await qp.write(lba: UInt64(lba), data, fua: Bool.random(using: &rng))
                transfers += 1
                model.replaceSubrange(range, with: data)
                for i in range { known[i] = true }
            case 3, 4:
                compare(lba, try await qp.read(lba: UInt64(lba), blocks: count), "read at step \(step)")
                transfers += 1
            case 5:
                let deallocate = Bool.random(using: &rng)
                try await qp.writeZeroes(
                    lba: UInt64(lba), blocks: UInt64(count), deallocate: deallocate,
                    fua: Bool.random(using: &rng))
                for i in range { model[i] = 0; known[i] = true }
            case 6:
                try await qp.deallocate(ranges: [(lba: UInt64(lba), blocks: UInt64(count))])
                for i in range { model[i] = 0; known[i] = backend.deallocatedReadsZeroes }
            case 7:
                try await qp.flush()
            default:
                let map = try await qp.allocationMap(lba: 0, blocks: UInt64(blocks))
                _ = allocatedLBAs(map, blocks: blocks)  // checks the descriptors cover the namespace
            }
        }
        // 32 writes at once on disjoint ranges, then every byte.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<32 {
                let data = randomBytes(16 * 4096, seed: seed.value &+ UInt64(i))
                model.replaceSubrange((i * 65536)..<((i + 1) * 65536), with: data)
                for j in (i * 65536)..<((i + 1) * 65536) { known[j] = true }
                group.addTask { try await qp.write(lba: UInt64(i * 128), data) }
            }
            try await group.waitForAll()
        }
        transfers += 32
        try await qp.flush()
        for chunk in stride(from: 0, to: blocks, by: 1024) {
            compare(chunk, try await qp.read(lba: UInt64(chunk), blocks: 1024), "final read")
            transfers += 1
        }
        return transfers
    }

    // MARK: Completion order

    @Test("a Read after a slow Flush completes while the Flush is still pending")
    func readOvertakesFlush() async throws {
        try await Self.withHeldBackend(workers: 4, { gate in .init(holding: .flush, until: gate) }) { rig, qp, gate in
            try await qp.write(lba: 0, randomBytes(4096, seed: 1))
            let flushed = Shared<Result<Void, NVMeError>?>(nil)
            qp.flush { r in flushed.withLock { $0 = r } }
            #expect(gate.waitUntilHolding(1), "flush never reached the backend")
            expectBytes(try await qp.read(lba: 0, blocks: 8), randomBytes(4096, seed: 1))
            #expect(flushed.value == nil, "the Flush completed before its backend work ended")
            gate.open()
            #expect(await eventually { flushed.value != nil })
            if case .failure(let e)? = flushed.value { Issue.record("flush failed: \(e)") }
        }
    }

    @Test("a fast Write overtakes a slow Read on the same queue")
    func writeOvertakesRead() async throws {
        try await Self.withHeldBackend(workers: 4, { gate in .init(holding: .read, range: 0..<4096, until: gate) }) {
            rig, qp, gate in
            try await qp.write(lba: 0, randomBytes(4096, seed: 2))
            let read = Shared<[UInt8]?>(nil)
            let buffer = try #require(DMABuffer(memory: rig.memory, byteCount: 4096))
            qp.transfer(.read(into: buffer), lba: 0, blocks: 8) { r in
                if case .success = r { read.withLock { $0 = buffer.bytes() } }
            }
            #expect(gate.waitUntilHolding(1))
            try await qp.write(lba: 64, randomBytes(8192, seed: 3))
            #expect(read.value == nil, "the held Read completed before the Write")
            gate.open()
            #expect(await eventually { read.value != nil })
            expectBytes(read.value ?? [], randomBytes(4096, seed: 2))
        }
    }

    // MARK: Flush coalescing

    @Test("a Flush covered by one in flight waits for it; with no write since the last Flush, none reaches the storage")
    func flushCoalescing() async throws {
        let (rig, fault) = try Self.faultRig(workers: 4)
        defer { rig.close() }
        let gate = FaultInjectingBackend.Gate()
        let held = fault.addRule(.init(holding: .flush, until: gate))
        try await guarded(rig) {
            let qp = rig.qp
            try await qp.write(lba: 0, randomBytes(4096, seed: 20))
            let done = Shared(0)
            qp.flush { r in if case .success = r { done.withLock { $0 += 1 } } }  // F1: reaches the storage
            #expect(gate.waitUntilHolding(1))
            qp.flush { r in if case .success = r { done.withLock { $0 += 1 } } }  // F2: covered by F1
            try await Task.sleep(for: .milliseconds(100))
            #expect(fault.faultCount(for: held) == 1, "F2 started a backend flush of its own")
            try await qp.write(lba: 8, randomBytes(4096, seed: 21))  // a write completes
            qp.flush { r in if case .success = r { done.withLock { $0 += 1 } } }  // F3: needs its own
            #expect(gate.waitUntilHolding(2), "F3 did not reach the storage")
            #expect(done.value == 0, "a Flush completed before the backend flush it waits for")
            gate.open()
            #expect(await eventually { done.value == 3 })
            // Nothing written since: answered without the storage.
            try await qp.flush()
            #expect(fault.faultCount(for: held) == 2)
            #expect(rig.controller.counters.snapshot()[.flushesCoalesced] == 2)
        }
    }

    @Test("a failed Flush fails the Flushes waiting on it, and the next one goes to the storage again")
    func flushCoalescingFailure() async throws {
        try await Self.withHeldBackend(
            workers: 4, { gate in .init(holding: .flush, until: gate, limit: 1, thenFailWith: EIO) }
        ) { rig, qp, gate in
            try await qp.write(lba: 0, randomBytes(4096, seed: 22))
            let failures = Shared(0)
            qp.flush { r in if case .failure = r { failures.withLock { $0 += 1 } } }  // held, then fails
            #expect(gate.waitUntilHolding(1))
            qp.flush { r in if case .failure = r { failures.withLock { $0 += 1 } } }  // waits on it
            try await Task.sleep(for: .milliseconds(50))
            gate.open()
            #expect(await eventually { failures.value == 2 }, "both Flushes report the failure")
            // Nothing became durable: the next Flush reaches the storage (and succeeds).
            try await qp.flush()
            #expect(rig.controller.counters.snapshot()[.flushesCoalesced] == 1)
        }
    }

    // MARK: The in-flight bound

    @Test("at the in-flight bound the controller stops fetching; every command still completes")
    func inFlightBound() async throws {
        try await Self.withHeldBackend(workers: 8, maximumInFlight: 4, { gate in .init(holding: .read, until: gate) }) {
            rig, qp, gate in
            let data = randomBytes(64 * 4096, seed: 5)
            try await qp.write(lba: 0, data)
            let (buffers, done, failures) = try Self.startPageReads(qp, rig.memory, pages: 64)
            #expect(gate.waitUntilHolding(4))
            try await Task.sleep(for: .milliseconds(100))
            #expect(gate.waiting == 4, "more than the bound reached the backend")
            #expect(done.value == 0)
            #expect(rig.controller.counters.snapshot()[.inFlightLimitStalls] > 0)
            gate.open()
            #expect(await eventually { done.value == 64 })
            #expect(failures.value == 0)
            expectPages(buffers, data, "read")
            #expect(rig.controller.counters.snapshot()[.storageInFlightPeak] == 4)
        }
    }

    // MARK: Reset

    @Test("a reset with backend work in flight waits for it, drops its completions, and the driver retries")
    func resetDrains() async throws {
        try await Self.withHeldBackend(workers: 2, { gate in .init(holding: .read, until: gate, limit: 2) }) {
            rig, qp, gate in
            let data = randomBytes(8 * 4096, seed: 6)
            try await qp.write(lba: 0, data)
            let (buffers, done, failures) = try Self.startPageReads(qp, rig.memory, pages: 8)
            #expect(gate.waitUntilHolding(2))
            let driver = rig.driver
            let reset = OwnThread { () -> String? in
                do { _ = try driver.reset(); return nil } catch { return "\(error)" }
            }
            try await Task.sleep(for: .milliseconds(200))
            #expect(reset.finished == nil, "the reset finished while backend work was still running")
            #expect(done.value == 0)
            gate.open()
            let outcome = await reset.value(timeoutSeconds: 30)
            #expect(outcome == .some(nil), "reset: \(String(describing: outcome))")
            #expect(await eventually { done.value == 8 })
            #expect(failures.value == 0, "reads failed across the reset")
            expectPages(buffers, data, "read after the reset")
            #expect(rig.controller.counters.snapshot()[.resets] == 1)
        }
    }

    // MARK: Exact sizes

    @Test(
        "an image whose size is not a whole number of blocks is served whole",
        arguments: [(1_000_000, 512), (1_000_000, 4096), (2048 * 333, 4096)])
    func oddSizedImage(bytes: Int, blockSize: Int) async throws {
        let file = TemporaryFile(in: "/tmp")
        let original = randomBytes(bytes, seed: 9)
        try Data(original).write(to: URL(fileURLWithPath: file.path))  // not .atomic: Foundation leaves a TemporaryDirectory.* behind
        var config = Rig.Config()
        config.blockSize = blockSize
        config.backend = { _ in try FileBackend(path: file.path) }
        let rig = try Rig(config)
        defer { rig.close() }
        let blocks = (bytes + blockSize - 1) / blockSize
        #expect(rig.driver.namespaces[0].blockCount == UInt64(blocks))
        try await guarded(rig) {
            let qp = rig.qp
            let tailLBA = UInt64(blocks - 1)
            let tailStart = (blocks - 1) * blockSize
            // The last block: the file's bytes, then zeroes.
            let tail = try await qp.read(lba: tailLBA, blocks: 1)
            expectBytes(Array(tail[0..<(bytes - tailStart)]), original[tailStart...])
            #expect(tail[(bytes - tailStart)...].allSatisfy { $0 == 0 })
            // Writing it keeps the file's size; the padding is dropped.
            let fresh = randomBytes(blockSize, seed: 10)
            try await qp.write(lba: tailLBA, fresh, fua: true)
            let again = try await qp.read(lba: tailLBA, blocks: 1)
            expectBytes(Array(again[0..<(bytes - tailStart)]), fresh[0..<(bytes - tailStart)])
            #expect(again[(bytes - tailStart)...].allSatisfy { $0 == 0 })
            let map = try await qp.allocationMap(lba: 0, blocks: UInt64(blocks))
            _ = allocatedLBAs(map, blocks: blocks)
        }
        var st = stat()
        #expect(stat(file.path, &st) == 0 && st.st_size == off_t(bytes), "the file grew to \(st.st_size)")
        let contents = try #require(file.contents(at: UInt64(bytes - 64), count: 64))
        expectBytes(
            contents,
            randomBytes(blockSize, seed: 10)[
                (bytes - (blocks - 1) * blockSize - 64)..<(bytes - (blocks - 1) * blockSize)])
    }

    // MARK: Fast zeroing

    @Test(
        "Write Zeroes with the fast-only bit fails at once where zeroing would write zeroes", arguments: [false, true])
    func fastZeroOnly(fileSystemCanZero: Bool) async throws {
        let file = TemporaryFile(in: "/tmp")
        var config = Rig.Config()
        config.namespaceBytes = 4 << 20
        config.backend = { try FileBackend(path: file.path, createSize: $0) }
        let rig = try Rig(config)
        defer { rig.close() }
        let backend = try #require(rig.backends[0] as? FileBackend)
        if !fileSystemCanZero {
            // As on a file system without fallocate's zeroing modes.
            backend.supportsZeroRange.store(false, ordering: .relaxed)
            backend.supportsPunchHole.store(false, ordering: .relaxed)
        }
        try await guarded(rig) {
            let qp = rig.qp
            let data = randomBytes(64 << 10, seed: 12)
            try await qp.write(lba: 0, data)
            for deallocate in [false, true] {
                do {
                    try await qp.writeZeroes(lba: 0, blocks: 128, deallocate: deallocate, fastOnly: true)
                    #expect(fileSystemCanZero, "fast-only zeroing succeeded by writing zeroes")
                    #expect(try await qp.read(lba: 0, blocks: 128).allSatisfy { $0 == 0 })
                    try await qp.write(lba: 0, data)
                } catch {
                    #expect(!fileSystemCanZero, "\(error)")
                    #expect((error as? NVMeError)?.status == NVMeStatus.zeroingNotFast, "\(error)")
                    expectBytes(try await qp.read(lba: 0, blocks: 128), data, "a refused fast zero changed data")
                }
            }
            // Without the bit it always works (by writing zeroes if need be).
            try await qp.writeZeroes(lba: 0, blocks: 128, deallocate: false)
            #expect(try await qp.read(lba: 0, blocks: 128).allSatisfy { $0 == 0 })
        }
    }

    // MARK: Helpers

    /// Starts one Read of 4 KiB (8 blocks) into a buffer of its own for each of the
    /// first `pages` pages, without waiting: the buffers, in page order, and counts
    /// of the reads completed and of those that failed.
    static func startPageReads(_ qp: QueuePair, _ memory: HostMemory, pages: Int) throws
        -> (buffers: [DMABuffer], done: Shared<Int>, failures: Shared<Int>)
    {
        let done = Shared(0)
        let failures = Shared(0)
        var buffers: [DMABuffer] = []
        for i in 0..<pages {
            let b = try #require(DMABuffer(memory: memory, byteCount: 4096))
            buffers.append(b)
            qp.transfer(.read(into: b), lba: UInt64(i * 8), blocks: 8) { r in
                if case .failure = r { failures.withLock { $0 += 1 } }
                done.withLock { $0 += 1 }
            }
        }
        return (buffers, done, failures)
    }

    /// Checks that each buffer of ``startPageReads(_:_:pages:)`` holds its page of `data`.
    func expectPages(
        _ buffers: [DMABuffer], _ data: [UInt8], _ what: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        for (i, b) in buffers.enumerated() {
            expectBytes(b.bytes(), data[(i * 4096)..<((i + 1) * 4096)], "\(what) \(i)", sourceLocation: sourceLocation)
        }
    }

    /// The frame of the tests that hold backend work at a gate: a ``faultRig(workers:maximumInFlight:)``
    /// with the rule `holding` builds from the gate, `body` run (with the rig, its
    /// queue pair and the gate) under ``guarded(_:seconds:sourceLocation:_:)``, then the rig closed.
    static func withHeldBackend(
        workers: Int, maximumInFlight: Int = Namespace.defaultMaximumInFlight,
        _ holding: (FaultInjectingBackend.Gate) -> FaultInjectingBackend.Rule,
        sourceLocation: SourceLocation = #_sourceLocation,
        _ body: @escaping @Sendable (Rig, QueuePair, FaultInjectingBackend.Gate) async throws -> Void
    )
        async throws
    {
        let (rig, fault) = try faultRig(workers: workers, maximumInFlight: maximumInFlight)
        defer { rig.close() }
        let gate = FaultInjectingBackend.Gate()
        fault.addRule(holding(gate))
        try await guarded(rig, sourceLocation: sourceLocation) { try await body(rig, rig.qp, gate) }
    }

    /// A memory namespace behind a fault-injecting wrapper, run on worker threads.
    static func faultRig(workers: Int, maximumInFlight: Int = Namespace.defaultMaximumInFlight) throws
        -> (Rig, FaultInjectingBackend)
    {
        let holder = Shared<FaultInjectingBackend?>(nil)
        var config = Rig.Config()
        config.namespaceBytes = 4 << 20
        config.io = .threads(workers: workers)
        config.maximumInFlight = maximumInFlight
        config.depth = 256
        config.backend = { size in
            let f = FaultInjectingBackend(wrapping: try MemoryBackend(byteCount: size))
            holder.withLock { $0 = f }
            return f
        }
        let rig = try Rig(config)
        return (rig, holder.value!)
    }
}

extension FaultInjectingBackend.Gate {
    /// Waits until `count` operations are held here, for the 20 s (scaled by
    /// ``WaitScale``) every test of this suite allows a held operation to arrive.
    func waitUntilHolding(_ count: Int) -> Bool {
        waitUntilHolding(count, milliseconds: Int(WaitScale.seconds(20) * 1000))
    }
}
