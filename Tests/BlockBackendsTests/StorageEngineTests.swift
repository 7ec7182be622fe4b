#if os(Linux)
@testable import BlockBackends
import Foundation
import Glibc
import TestSupport
import Testing

/// The engines on their own, as the controller drives them: start, commit,
/// wait on the eventfd, reap. Memory of every alignment (so `cache=none`
/// bounces), vectors of several segments, offsets and lengths that direct I/O
/// cannot take, a file shortened behind the backend's back.
@Suite("StorageEngine")
struct StorageEngineTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var ioUring: Bool
        var cache: FileCaching
        var testDescription: String { "\(ioUring ? "io_uring" : "threads"), cache=\(cache.rawValue)" }
        static let all = [true, false].flatMap { u in FileCaching.allCases.map { Case(ioUring: u, cache: $0) } }
    }

    static func engine(_ c: Case, _ backend: FileBackend, _ wake: WakeSignal) throws -> any StorageEngine {
        if c.ioUring {
            let allowed =
                (try? String(contentsOfFile: "/proc/sys/kernel/io_uring_disabled", encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines) ?? "0"
            guard allowed == "0" else { try Test.cancel("io_uring disabled by kernel.io_uring_disabled=\(allowed)") }
            return try IOURingEngine(backend: backend, capacity: 64, wake: wake)
        }
        return ThreadPoolEngine(backend: backend, workers: 4, wake: wake)
    }

    /// Runs `operations` at once and returns their results by tag.
    static func runAll(_ engine: any StorageEngine, _ wake: WakeSignal, _ operations: [StorageOperation])
        -> [Int: StorageResult]
    {
        for (tag, op) in operations.enumerated() { engine.start(op, tag: tag) }
        engine.commit()
        var results: [Int: StorageResult] = [:]
        let deadline = Date().addingTimeInterval(WaitScale.seconds(30))
        while results.count < operations.count && Date() < deadline {
            wake.drain()
            if engine.reap({ results[$0] = $1 }) > 0 || engine.hasCompletions { continue }
            wake.wait(timeoutMilliseconds: 1000)
        }
        #expect(results.count == operations.count, "lost completions: \(operations.count - results.count)")
        #expect(engine.inFlight == 0)
        return results
    }

    @Test("random transfers of any alignment, vectored and not, against a model", arguments: Case.all)
    func randomTransfers(_ c: Case) throws {
        let directory = try TemporaryDirectory(under: "/tmp")
        let size = 4 << 20
        let path = directory.path + "/engine.img"
        _ = try FileBackend(path: path, createSize: UInt64(size))
        let backend = try FileBackend(path: path, caching: c.cache)
        let wake = try WakeSignal()
        let engine = try Self.engine(c, backend, wake)
        defer { engine.close() }
        let seed = TestSeed.fresh(c.testDescription)
        var rng = seed.generator()
        var model = [UInt8](repeating: 0, count: size)
        // One arena, carved into segments at odd offsets.
        let arena = UnsafeMutableRawBufferPointer.allocate(byteCount: 8 << 20, alignment: 4096)
        defer { arena.deallocate() }
        for round in 0..<12 {
            var operations: [StorageOperation] = []
            var reads: [(Int, Int, IOVector)] = []  // tag, offset, vector
            var cursor = 0
            var claimed: [Range<Int>] = []
            for _ in 0..<16 {
                // 512-aligned or arbitrary offsets; lengths of any size; 1 to 4 segments.
                let aligned = Bool.random(using: &rng)
                let length =
                    aligned ? 512 * Int.random(in: 1...64, using: &rng) : Int.random(in: 1...40_000, using: &rng)
                var offset = Int.random(in: 0...(size - length), using: &rng)
                if aligned { offset = offset / 4096 * 4096 }
                guard !claimed.contains(where: { $0.overlaps(offset..<(offset + length)) }) else { continue }
                claimed.append(offset..<(offset + length))
                var vector = IOVector()
                var left = length
                let pieces = Int.random(in: 1...4, using: &rng)
                for p in 0..<pieces where left > 0 {
                    let n = p == pieces - 1 ? left : Int.random(in: 1...left, using: &rng)
                    cursor += Int.random(in: 0...64, using: &rng) * (aligned ? 64 : 1) + 4096  // gaps: not adjacent
                    guard cursor + n < arena.count else { break }
                    vector.append(IOSegment(base: arena.baseAddress! + cursor, count: n))
                    cursor += n
                    left -= n
                }
                guard vector.byteCount == length else { continue }
                if Bool.random(using: &rng) {
                    let data = randomBytes(length, using: &rng)
                    vector.copy(from: data)
                    model.replaceSubrange(offset..<(offset + length), with: data)
                    operations.append(
                        .write(offset: UInt64(offset), from: vector, forceUnitAccess: Bool.random(using: &rng)))
                } else {
                    vector.zero()
                    reads.append((operations.count, offset, vector))
                    operations.append(.read(offset: UInt64(offset), into: vector))
                }
            }
            operations.append(.flush)
            let results = Self.runAll(engine, wake, operations)
            for (tag, result) in results where result != .done {
                Issue.record("operation \(tag) of round \(round): \(result) (\(seed))")
            }
            for (_, offset, vector) in reads {
                var got = [UInt8](repeating: 0, count: vector.byteCount)
                got.withUnsafeMutableBytes { vector.copy(to: $0.baseAddress!) }
                if got != Array(model[offset..<(offset + vector.byteCount)]) {
                    Issue.record("read at \(offset)+\(vector.byteCount) differs (round \(round), \(seed))")
                }
            }
        }
        // Everything the engine wrote is in the file.
        let contents = try #require(FileManager.default.contents(atPath: path))
        #expect([UInt8](contents) == model, "file differs from the model (\(seed))")
    }

    @Test("errors, a file shortened behind our back, and the helper operations", arguments: Case.all)
    func edges(_ c: Case) throws {
        let directory = try TemporaryDirectory(under: "/tmp")
        let path = directory.path + "/edges.img"
        _ = try FileBackend(path: path, createSize: 1 << 20)
        let backend = try FileBackend(path: path, caching: c.cache)
        let wake = try WakeSignal()
        let engine = try Self.engine(c, backend, wake)
        defer { engine.close() }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 4096)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0x5A)
        let whole = IOVector(IOSegment(base: buffer.baseAddress!, count: 1 << 16))
        // The write first (operations started together may finish in any order).
        var results = Self.runAll(engine, wake, [.write(offset: 0, from: whole, forceUnitAccess: true)])
        #expect(results[0] == .done)
        results = Self.runAll(
            engine, wake,
            [
                .flush,
                .writeZeroes(offset: 4096, length: 8192, deallocate: true, quickly: false, forceUnitAccess: true),
                .deallocate(ranges: [32768..<40960]),
                .allocationMap(offset: 0, length: 1 << 20),
                .read(offset: (1 << 20) - 100, into: IOVector(IOSegment(base: buffer.baseAddress!, count: 200))),
            ])
        #expect(results[0] == .done && results[1] == .done && results[2] == .done)
        guard case .extents(let extents)? = results[3] else {
            Issue.record("no extents: \(String(describing: results[3]))"); return
        }
        #expect(extents.first?.offset == 0 && extents.last.map { $0.offset + $0.length } == 1 << 20)
        guard case .failed(let e)? = results[4], case .outOfRange = e.kind else {
            Issue.record("a read past the end: \(String(describing: results[4]))")
            return
        }
        // Shortened to 10000 bytes behind the backend's back: what is gone reads as
        // zeroes (a short read, continued past the new end).
        #expect(truncate(path, 10000) == 0)
        buffer.initializeMemory(as: UInt8.self, repeating: 0xEE)
        results = Self.runAll(
            engine, wake, [.read(offset: 0, into: IOVector(IOSegment(base: buffer.baseAddress!, count: 16384)))])
        #expect(results[0] == .done, "\(String(describing: results[0]))")
        let got = [UInt8](UnsafeRawBufferPointer(rebasing: buffer[0..<16384]))
        #expect(got[0..<4096].allSatisfy { $0 == 0x5A }, "the bytes before the zeroed range")
        #expect(
            got[4096...].allSatisfy { $0 == 0 },
            "zeroed, then past the new end: \(Set(got[4096...]).sorted()) first nonzero \(String(describing: got[4096...].firstIndex { $0 != 0 }))"
        )
    }

    @Test("threads: queued operations can be cancelled (reset)")
    func cancelQueued() throws {
        let directory = try TemporaryDirectory(under: "/tmp")
        let backend = FaultInjectingBackend(wrapping: try MemoryBackend(byteCount: 1 << 20))
        let gate = FaultInjectingBackend.Gate()
        backend.addRule(.init(holding: .flush, until: gate))
        _ = directory
        let wake = try WakeSignal()
        let engine = ThreadPoolEngine(backend: backend, workers: 1, wake: wake)
        defer { engine.close() }
        for tag in 0..<5 { engine.start(.flush, tag: tag) }
        engine.commit()
        #expect(gate.waitUntilHolding(1, milliseconds: Int(WaitScale.seconds(10) * 1000)))
        engine.cancelQueued()
        gate.open()
        var results: [Int: StorageResult] = [:]
        let deadline = Date().addingTimeInterval(WaitScale.seconds(10))
        while results.count < 5 && Date() < deadline {
            wake.drain()
            if engine.reap({ results[$0] = $1 }) == 0 { wake.wait(timeoutMilliseconds: 100) }
        }
        #expect(results[0] == .done, "the running one finishes")
        for tag in 1..<5 {
            guard case .failed(let e)? = results[tag], case .system(ECANCELED) = e.kind else {
                Issue.record("operation \(tag): \(String(describing: results[tag]))")
                continue
            }
        }
    }
}
#endif
