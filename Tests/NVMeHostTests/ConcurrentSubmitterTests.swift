import BlockBackends
import DMA
import Foundation
import NVMe
import NVMeController
import NVMeHost
import TestSupport
import Testing

/// Where the namespace of a test lives.
enum NamespaceStore: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case memory, tmpFile, shmFile
    var testDescription: String { rawValue }
    var directory: String? {
        switch self {
        case .memory: nil
        case .tmpFile: "/tmp"
        case .shmFile: "/dev/shm"
        }
    }
    static var available: [NamespaceStore] {
        allCases.filter { $0.directory.map { FileManager.default.fileExists(atPath: $0) } ?? true }
    }
}

/// Several queue pairs, many tasks each, random reads / writes / write-zeroes /
/// deallocates of random sizes (some above MDTS, so they split), checked byte for
/// byte against a model. Each task owns a region of LBAs, so no two requests race
/// for the same bytes and every read has exactly one right answer; a shared region
/// written once before the run is read by everyone while the others write.
@Suite(.timeLimit(.minutes(30))) struct ConcurrentSubmitterTests {
    static let pairs = 3
    static let tasksPerPair = 6
    static let regionBlocks = 4096  // 2 MiB per task
    static let operationsPerTask = 60
    static let sharedLBA: UInt64 = (40 << 20) / 512
    static let sharedBlocks = (1 << 20) / 512

    @Test(arguments: NamespaceStore.available, [true, false])
    func manySubmittersAgainstAModel(store: NamespaceStore, shadow: Bool) async throws {
        let file = store.directory.map { TemporaryFile(in: $0) }
        var c = Rig.Config()
        c.shadow = shadow
        c.queuePairs = Self.pairs
        c.depth = 8  // 7 slots for 6 tasks whose requests split: some wait
        c.namespaceBytes = 48 << 20
        if let file { c.backend = { try FileBackend(path: file.path, createSize: $0) } }
        let rig = try Rig(c)
        defer { rig.close() }
        let pairs = rig.driver.queuePairs
        #expect(pairs.count == Self.pairs)
        #expect(rig.driver.shadowDoorbellsEnabled == shadow)

        let source = randomBytes(4 << 20, seed: 0x5EED)
        let shared = randomBytes(Self.sharedBlocks * 512, seed: 0xC0FFEE)
        try await pairs[0].write(lba: Self.sharedLBA, shared)
        let seed = TestSeed.fixed(shadow ? 1 : 0)

        let result = try await guarded(rig) {
            try await withThrowingTaskGroup(of: (Int, [UInt8]).self) { group in
                for p in 0..<Self.pairs {
                    for t in 0..<Self.tasksPerPair {
                        let region = p * Self.tasksPerPair + t
                        group.addTask {
                            (
                                region,
                                try await Self.worker(
                                    qp: pairs[p], region: region, source: source, shared: shared,
                                    seed: seed)
                            )
                        }
                    }
                }
                var out: [Int: [UInt8]] = [:]
                for try await (region, model) in group { out[region] = model }
                return out
            }
        }
        guard let models = result else { return }
        #expect(models.count == Self.pairs * Self.tasksPerPair)

        // The end state, read through a pair other than the writer's.
        for (region, model) in models.sorted(by: { $0.key < $1.key }) {
            let reader = pairs[(region / Self.tasksPerPair + 1) % Self.pairs]
            let got = try await reader.read(lba: UInt64(region * Self.regionBlocks), blocks: Self.regionBlocks)
            expectBytes(got, model, "region \(region) at the end, \(seed)")
        }
        expectBytes(try await pairs[2].read(lba: Self.sharedLBA, blocks: Self.sharedBlocks), shared, "shared region")
        let stats = rig.driver.statistics
        #expect(stats[.errors] == 0)
        #expect(stats[.splitRequests] > 0, "some requests were above MDTS")
        #expect(stats[.completionsReaped] == stats[.commandsSubmitted])
        for qp in pairs { #expect(qp.counters.snapshot()[.commandsSubmitted] > 50) }
        #expect(rig.controller.counters.snapshot()[.commandErrors] == 0)
    }

    /// One task: random operations on its own region, mirrored in a model; its
    /// generator is stream `region * 0x9E37` of `seed`.
    static func worker(
        qp: QueuePair, region: Int, source: [UInt8], shared: [UInt8],
        seed: TestSeed
    ) async throws -> [UInt8] {
        var rng = seed.generator(stream: UInt64(region) &* 0x9E37)
        var model = [UInt8](repeating: 0, count: regionBlocks * 512)
        let base = UInt64(region * regionBlocks)
        for op in 0..<operationsPerTask {
            let size: Int
            switch rng.next() % 10 {
            case 0..<7: size = 1 + Int(rng.next() % 64)
            case 7, 8: size = 65 + Int(rng.next() % 448)
            default: size = 1025 + Int(rng.next() % 976)  // above MDTS (1024 blocks)
            }
            let start = Int(rng.next() % UInt64(regionBlocks - size + 1))
            let lo = start * 512, n = size * 512
            switch rng.next() % 10 {
            case 0..<4:
                let from = Int(rng.next() % UInt64(source.count - n + 1))
                let chunk = Array(source[from..<(from + n)])
                try await qp.write(lba: base + UInt64(start), chunk)
                model.withUnsafeMutableBytes { m in
                    chunk.withUnsafeBytes { (m.baseAddress! + lo).copyMemory(from: $0.baseAddress!, byteCount: n) }
                }
            case 4, 5:
                let got = try await qp.read(lba: base + UInt64(start), blocks: size)
                let ok = model.withUnsafeBytes { m in
                    got.withUnsafeBytes { g in
                        expectBytes(
                            g, UnsafeRawBufferPointer(rebasing: m[lo..<(lo + n)]),
                            "region \(region) op \(op) read \(start)+\(size), \(seed)")
                    }
                }
                if !ok { return model }
            case 6:
                try await qp.writeZeroes(
                    lba: base + UInt64(start), blocks: UInt64(size), deallocate: rng.next() % 2 == 0)
                model.withUnsafeMutableBytes { _ = memset($0.baseAddress! + lo, 0, n) }
            case 7:
                try await qp.deallocate(ranges: [(lba: base + UInt64(start), blocks: UInt64(size))])
                model.withUnsafeMutableBytes { _ = memset($0.baseAddress! + lo, 0, n) }
            default:
                let blocks = 1 + Int(rng.next() % UInt64(sharedBlocks))
                let first = Int(rng.next() % UInt64(sharedBlocks - blocks + 1))
                let got = try await qp.read(lba: sharedLBA + UInt64(first), blocks: blocks)
                let ok = shared.withUnsafeBytes { s in
                    got.withUnsafeBytes { g in
                        expectBytes(
                            g, UnsafeRawBufferPointer(rebasing: s[(first * 512)..<((first + blocks) * 512)]),
                            "region \(region) op \(op) shared read, \(seed)")
                    }
                }
                if !ok { return model }
            }
        }
        return model
    }
}
