import BlockBackends
import CNBD
import Foundation
import NBDServer
import TestSupport
import Testing

/// One combination the command tests run in.
struct Mode: Sendable, CustomStringConvertible {
    var doorbells: Doorbells
    var transport: Transport
    var structured: Bool
    var description: String { "\(doorbells) doorbells, \(transport), \(structured ? "structured" : "simple") replies" }

    static let all: [Mode] = Doorbells.allCases.flatMap { d in
        Transport.allCases.flatMap { t in [true, false].map { Mode(doorbells: d, transport: t, structured: $0) } }
    }
}

/// Every command and flag, in both reply styles, both doorbell modes and over
/// both transports; memory exports with 512- and 4096-byte LBAs, and a file export.
@Suite("NBD server commands", .timeLimit(.minutes(30)))
struct CommandTests {
    static let size = 16 << 20

    @Test("every command and flag on memory exports (LBA 512 and 4096)", arguments: Mode.all)
    func everyCommand(mode: Mode) throws {
        let exports = [
            ExportSpec(name: "", size: UInt64(Self.size), blockSize: 512),
            ExportSpec(name: "4k", size: UInt64(Self.size), blockSize: 4096),
        ]
        try withServer(exports: exports, doorbells: mode.doorbells, queues: 2) { f in
            for (i, spec) in exports.enumerated() {
                let idlePages = f.dmaPagesInUse(export: spec.name)
                let c = try f.client(mode.transport, export: spec.name, structured: mode.structured)
                var exercise = CommandExercise(
                    fixture: f, client: c, spec: spec, structured: mode.structured,
                    seed: .fixed(UInt64(0x5EED_0000 + i)))
                try exercise.run()
                try c.shutdown()
                #expect(
                    eventually { f.dmaPagesInUse(export: spec.name) == idlePages },
                    "DMA pages: \(f.dmaPagesInUse(export: spec.name)) in use, \(idlePages) when idle")
                let stats = f.statistics(export: spec.name)
                #expect(stats.shadowDoorbells == mode.doorbells.shadowDoorbells)
                if mode.doorbells == .shadow {
                    #expect(stats.host[.sqShadowDoorbellWrites] > 0)
                } else {
                    #expect(stats.host[.sqShadowDoorbellWrites] == 0)
                    #expect(stats.controller[.mmioSQTailDoorbellWrites] >= stats.controller.ioCommands / 2)
                }
                #expect(stats.nbd[.unalignedRequests] > 0, "unaligned requests went through read-modify-write")
                #expect(stats.nbd[.errors] == 0)
                #expect(
                    stats.nbd[.trims] > 0 && stats.nbd[.writeZeroes] > 0 && stats.nbd[.caches] > 0
                        && stats.nbd[.flushes] > 0)
                if mode.structured {
                    #expect(stats.nbd[.blockStatus] > 0)
                    #expect(stats.controller[.allocationMaps] > 0)
                }
            }
        }
    }

    @Test("every command and flag on a file-backed export", arguments: Doorbells.allCases, [true, false])
    func fileExport(doorbells: Doorbells, structured: Bool) throws {
        let dir = try makeTemporaryDirectory(under: "/tmp", prefix: "nbdsrv")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/disk.img"
        let spec = ExportSpec(name: "file", backing: .file(path: path), size: UInt64(Self.size), blockSize: 512)
        try withServer(exports: [spec], doorbells: doorbells) { f in
            let c = try f.client(.unix, export: "file", structured: structured)
            #expect(try c.size == Int64(Self.size))
            var exercise = CommandExercise(
                fixture: f, client: c, spec: spec, structured: structured, seed: .fixed(0xF11E))
            try exercise.run()
            try c.shutdown()
            #expect(f.statistics(export: "file").nbd[.errors] == 0)
        }
        // What the server wrote is in the file (flushed at shutdown).
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.size] as? NSNumber)?.intValue == Self.size)
    }

    @Test("sparse reads and block status over more extents than one allocation map holds", arguments: [512, 4096])
    func fragmented(blockSize: Int) throws {
        try withServer(exports: [ExportSpec(name: "", size: 64 << 20, blockSize: blockSize)]) { f in
            let c = try f.client(.tcp)
            let seed = TestSeed.fixed(UInt64(blockSize))
            var rng = seed.generator()
            // 4 KiB of data every 8 KiB over 8 MiB: 2048 extents (a map holds 255).
            let base = 8 << 20, span = 8 << 20
            var shadow = Shadow(size: span)
            for page in stride(from: 0, to: span, by: 8192) {
                let data = randomBytes(4096, using: &rng)
                try c.pwrite(data, offset: UInt64(base + page))
                shadow.write(data, at: page)
            }
            for offset in [0, 4096 + 512, span - (32 << 20) / 8] {
                let count = min(4 << 20, span - offset)
                let (data, chunks) = try c.preadStructured(count: count, offset: UInt64(base + offset))
                expectBytes(data, shadow.slice(offset, count), "fragmented read at \(offset), \(seed)")
                var at = UInt64(base + offset)
                for chunk in chunks {
                    #expect(chunk.offset == at, "chunks tile the read")
                    at += UInt64(chunk.count)
                }
                #expect(at == UInt64(base + offset + count))
                #expect(chunks.contains { $0.kind == .hole })
            }
            // Block status answers a prefix: alternating extents from the offset.
            let extents = try c.blockStatus(count: UInt64(span), offset: UInt64(base))
            #expect(extents.count >= 2 && extents.count <= 255, "\(extents.count) extents")
            for (i, e) in extents.enumerated() {
                #expect(e.length == 4096 && e.isHole == (i % 2 == 1), "extent \(i): \(e)")
            }
            // A whole 32 MiB read (the maximum payload) over the fragmented range.
            let (all, allChunks) = try c.preadStructured(count: 32 << 20, offset: 0)
            expectBytes(Array(all[base..<(base + span)]), shadow.bytes, "32 MiB read, \(seed)")
            expectZeroes(Array(all[0..<base]), "32 MiB read before the data")
            #expect(allChunks.map(\.count).reduce(0, +) == 32 << 20)
        }
    }
}

/// The command sequence run against one export through one libnbd handle, checked
/// against a local model of the export's bytes.
struct CommandExercise {
    let fixture: ServerFixture
    let client: NBDClient
    /// The export under test, as the server was given it (name, size, block size, backing).
    let spec: ExportSpec
    let structured: Bool
    let seed: TestSeed
    var rng: SplitMix64
    var shadow: Shadow

    init(fixture: ServerFixture, client: NBDClient, spec: ExportSpec, structured: Bool, seed: TestSeed) {
        self.fixture = fixture
        self.client = client
        self.spec = spec
        self.structured = structured
        self.seed = seed
        rng = seed.generator()
        shadow = Shadow(size: Int(spec.size!))
    }

    var export: String { spec.name }
    var blockSize: Int { spec.blockSize! }
    var size: Int { Int(spec.size!) }
    var fileBacked: Bool { if case .file = spec.backing { true } else { false } }

    let fua = UInt32(LIBNBD_CMD_FLAG_FUA)
    let noHole = UInt32(LIBNBD_CMD_FLAG_NO_HOLE)
    let df = UInt32(LIBNBD_CMD_FLAG_DF)
    let reqOne = UInt32(LIBNBD_CMD_FLAG_REQ_ONE)
    let fastZero = UInt32(LIBNBD_CMD_FLAG_FAST_ZERO)

    // Regions (all inside 16 MiB): random writes anywhere below 6 MiB; trim
    // tests at 8 MiB; write-zeroes tests at 10 MiB; sparse reads at 12 MiB.
    let trimBase = 8 << 20
    let zeroBase = 10 << 20
    let sparseBase = 12 << 20

    mutating func run() throws {
        try randomWrites()
        try client.flush()
        try verifyAll("after random writes")
        try trims()
        try writeZeroes()
        try cache()
        try sparseReads()
        try blockStatusChecks()
        try verifyAll("at the end")
    }

    mutating func write(_ data: [UInt8], at offset: Int, flags: UInt32 = 0) throws {
        try client.pwrite(data, offset: UInt64(offset), flags: flags)
        shadow.write(data, at: offset)
    }

    func expectRange(
        _ offset: Int, _ count: Int, _ what: String, flags: UInt32 = 0,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let got = try client.pread(count: count, offset: UInt64(offset), flags: flags)
        expectBytes(
            got, shadow.slice(offset, count), "\(what): \(count)@\(offset) in '\(export)', \(seed)",
            sourceLocation: sourceLocation)
    }

    func verifyAll(_ what: String) throws {
        let piece = 4 << 20
        for offset in stride(from: 0, to: size, by: piece) {
            try expectRange(offset, piece, what)
        }
    }

    /// Writes of every awkward length at aligned and unaligned offsets; each is
    /// read back with some bytes either side (read-modify-write must keep them).
    mutating func randomWrites() throws {
        let lengths = [
            1, 7, 511, 512, 513, 4095, 4096, 4097, 8192, 65_536 + 3, 300_000, (1 << 20) + 17, 2 << 20, 3 << 20,
        ]
        let limit = 6 << 20
        for (i, length) in (lengths + lengths.shuffled(using: &rng)).enumerated() {
            var offset = Int.random(in: 0..<(limit - length), using: &rng)
            if i % 2 == 0 { offset -= offset % blockSize }
            let data = randomBytes(length, using: &rng)
            try write(data, at: offset, flags: i % 3 == 0 ? fua : 0)
            let lo = max(0, offset - 700), hi = min(size, offset + length + 700)
            try expectRange(lo, hi - lo, "write #\(i) read back with margins")
        }
        // Many small unaligned writes into the same few blocks.
        for _ in 0..<64 {
            let offset = 5 << 20 + Int.random(in: 0..<(3 * blockSize), using: &rng)
            try write(randomBytes(Int.random(in: 1...100, using: &rng), using: &rng), at: offset)
        }
        try expectRange(5 << 20, 4 * blockSize, "small overlapping writes")
    }

    func extents(_ offset: Int, _ count: Int, flags: UInt32 = 0) throws -> [Extent] {
        try client.blockStatus(count: UInt64(count), offset: UInt64(offset), flags: flags)
    }

    /// The first extent at `offset` must cover at least `count` bytes with `hole|zero`.
    func expectHole(_ offset: Int, _ count: Int, _ what: String, sourceLocation: SourceLocation = #_sourceLocation)
        throws
    {
        guard structured else { return }
        let e = try extents(offset, count)
        #expect(!e.isEmpty, "\(what): no extents, \(seed)", sourceLocation: sourceLocation)
        guard let first = e.first else { return }
        #expect(
            first.isHole && first.isZero && Int(first.length) >= count,
            "\(what): extents at \(offset)+\(count) are \(e), \(seed)", sourceLocation: sourceLocation)
    }

    func expectData(_ offset: Int, _ count: Int, _ what: String, sourceLocation: SourceLocation = #_sourceLocation)
        throws
    {
        guard structured else { return }
        let e = try extents(offset, count)
        guard let first = e.first else {
            Issue.record("\(what): no extents, \(seed)", sourceLocation: sourceLocation)
            return
        }
        #expect(
            !first.isHole && !first.isZero && Int(first.length) >= count,
            "\(what): extents at \(offset)+\(count) are \(e), \(seed)", sourceLocation: sourceLocation)
    }

    mutating func trims() throws {
        let base = trimBase
        try write(randomBytes(1 << 20, using: &rng), at: base)
        try expectData(base, 1 << 20, "written region")
        // Whole 4 KiB pages: the memory backend and file systems punch holes there.
        try client.trim(count: 256 << 10, offset: UInt64(base + (64 << 10)))
        shadow.zero(256 << 10, at: base + (64 << 10))
        try expectRange(base, 1 << 20, "after aligned trim")
        try expectHole(base + (64 << 10), 256 << 10, "trimmed range")
        try expectData(base, 64 << 10, "before the trimmed range")
        try expectData(base + (320 << 10), 64 << 10, "after the trimmed range")
        if structured {
            let e = try extents(base, 1 << 20)
            #expect(e.map(\.length).reduce(0, +) >= 1 << 20, "extents cover the range: \(e)")
            #expect(
                e.count == 3 && e[0].length == 64 << 10 && !e[0].isHole && e[1].length == 256 << 10 && e[1].isHole,
                "data, hole, data: \(e)")
        }
        // Unaligned trim, with FUA: only the whole blocks inside are discarded (and
        // read back as zeroes); the partial blocks at the edges are left alone.
        let start = base + (512 << 10) + 100, count = 10_000
        try client.trim(count: UInt64(count), offset: UInt64(start), flags: fua)
        let firstBlock = (start + blockSize - 1) / blockSize * blockSize
        let endBlock = (start + count) / blockSize * blockSize
        if endBlock > firstBlock { shadow.zero(endBlock - firstBlock, at: firstBlock) }
        try expectRange(base + (512 << 10), 64 << 10, "after unaligned trim")
        // A trim shorter than a block is a no-op.
        try client.trim(count: UInt64(blockSize / 2), offset: UInt64(base + (900 << 10) + 3))
        try expectRange(base + (900 << 10), 4096, "after sub-block trim")
    }

    mutating func writeZeroes() throws {
        let base = zeroBase
        try write(randomBytes(1 << 20, using: &rng), at: base)
        // Plain: may (and here does) deallocate.
        try client.zero(count: 128 << 10, offset: UInt64(base + (4 << 10)))
        shadow.zero(128 << 10, at: base + (4 << 10))
        try expectRange(base, 256 << 10, "after write zeroes")
        try expectHole(base + (4 << 10), 128 << 10, "zeroed range")
        // NO_HOLE: reads as zeroes. The memory backend keeps no pages of zeroes (a
        // hole either way); a file system may keep the range allocated.
        try client.zero(count: 128 << 10, offset: UInt64(base + (256 << 10)), flags: noHole)
        shadow.zero(128 << 10, at: base + (256 << 10))
        try expectRange(base + (256 << 10), 256 << 10, "after write zeroes NO_HOLE")
        if structured {
            let e = try extents(base + (256 << 10), 128 << 10)
            if fileBacked {
                #expect(e.allSatisfy { !$0.isHole || $0.isZero }, "a hole reads as zeroes: \(e)")
            } else {
                try expectHole(base + (256 << 10), 128 << 10, "NO_HOLE range of a memory export")
            }
        }
        // FAST_ZERO, unaligned (partial blocks by read-modify-write), and FUA.
        try client.zero(count: 10_001, offset: UInt64(base + (512 << 10) + 3), flags: fastZero)
        shadow.zero(10_001, at: base + (512 << 10) + 3)
        try client.zero(count: 300, offset: UInt64(base + (600 << 10) + 17), flags: fua | noHole)
        shadow.zero(300, at: base + (600 << 10) + 17)
        try client.zero(count: 64 << 10, offset: UInt64(base + (700 << 10)), flags: fua | fastZero)
        shadow.zero(64 << 10, at: base + (700 << 10))
        try expectRange(base, 1 << 20, "after unaligned, FAST_ZERO and FUA write zeroes")
        try expectData(base + (900 << 10), 64 << 10, "untouched data after the zeroed ranges")
    }

    mutating func cache() throws {
        let before = fixture.statistics(export: export).controller[.reads]
        try client.cache(count: 3 << 20, offset: 0)
        try client.cache(count: 1000, offset: 777)
        let after = fixture.statistics(export: export).controller[.reads]
        #expect(after >= before + 6, "CACHE reads through the controller (MDTS-sized): \(before) → \(after)")
    }

    /// Structured reads of 64 KiB or more answer deallocated ranges with OFFSET_HOLE;
    /// DF and shorter reads get one data chunk.
    mutating func sparseReads() throws {
        let base = sparseBase
        try write(randomBytes(1 << 20, using: &rng), at: base)
        try client.trim(count: 512 << 10, offset: UInt64(base + (256 << 10)))
        shadow.zero(512 << 10, at: base + (256 << 10))
        guard structured else {
            try expectRange(base, 1 << 20, "simple-reply read over a trimmed range")
            return
        }
        let (data, chunks) = try client.preadStructured(count: 1 << 20, offset: UInt64(base))
        expectBytes(data, shadow.slice(base, 1 << 20), "sparse read, \(seed)")
        expectTiling(chunks, base, 1 << 20)
        #expect(chunks.map(\.kind) == [.data, .hole, .data], "chunks \(chunks)")
        #expect(
            chunks.contains(ReadChunk(kind: .hole, offset: UInt64(base + (256 << 10)), count: 512 << 10)),
            "one hole chunk for the trimmed range: \(chunks)")
        // Unaligned, over the hole's edges.
        let (d2, c2) = try client.preadStructured(count: (300 << 10) + 5, offset: UInt64(base + (200 << 10) + 3))
        expectBytes(d2, shadow.slice(base + (200 << 10) + 3, (300 << 10) + 5), "unaligned sparse read, \(seed)")
        expectTiling(c2, base + (200 << 10) + 3, (300 << 10) + 5)
        #expect(c2.contains { $0.kind == .hole }, "chunks \(c2)")
        // All hole.
        let (d3, c3) = try client.preadStructured(count: 256 << 10, offset: UInt64(base + (300 << 10)))
        expectZeroes(d3, "all-hole read")
        #expect(c3 == [ReadChunk(kind: .hole, offset: UInt64(base + (300 << 10)), count: 256 << 10)], "chunks \(c3)")
        // DF: one data chunk.
        let (d4, c4) = try client.preadStructured(count: 1 << 20, offset: UInt64(base), flags: df)
        expectBytes(d4, shadow.slice(base, 1 << 20), "DF read, \(seed)")
        #expect(c4 == [ReadChunk(kind: .data, offset: UInt64(base), count: 1 << 20)], "DF chunks \(c4)")
        let (d6, c6) = try client.preadStructured(count: 100_000, offset: UInt64(base + 5), flags: df)
        expectBytes(d6, shadow.slice(base + 5, 100_000), "unaligned DF read, \(seed)")
        #expect(c6.count == 1 && c6.first?.kind == .data, "DF chunks \(c6)")
        // Below the threshold: one data chunk even over a hole.
        let (d5, c5) = try client.preadStructured(count: 32 << 10, offset: UInt64(base + (300 << 10)))
        expectZeroes(d5, "short read over a hole")
        #expect(c5.count == 1 && c5.first?.kind == .data, "chunks \(c5)")
    }

    func expectTiling(
        _ chunks: [ReadChunk], _ offset: Int, _ count: Int, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        var at = UInt64(offset)
        for c in chunks {
            #expect(
                c.offset == at && c.kind != .error, "chunks \(chunks) do not tile \(count)@\(offset)",
                sourceLocation: sourceLocation)
            at = c.offset + UInt64(c.count)
        }
        #expect(
            at == UInt64(offset + count), "chunks \(chunks) do not cover \(count)@\(offset)",
            sourceLocation: sourceLocation)
    }

    mutating func blockStatusChecks() throws {
        guard structured else { return }
        let base = sparseBase
        // data 256K | hole 512K | data 256K (from sparseReads)
        let all = try extents(base, 1 << 20)
        #expect(all.count == 3, "extents \(all)")
        let one = try extents(base, 1 << 20, flags: reqOne)
        #expect(one.count == 1 && one.first?.length == 256 << 10 && one.first?.isHole == false, "REQ_ONE: \(one)")
        let oneHole = try extents(base + (300 << 10), 1 << 20, flags: reqOne)
        #expect(
            oneHole.count == 1 && oneHole.first.map { $0.isHole && $0.isZero && $0.length == 468 << 10 } == true,
            "REQ_ONE from inside the hole: \(oneHole)")
        // REQ_ONE: the one extent MUST NOT be longer than the request, even when
        // the request ends inside a block.
        for (offset, count) in [(base + 100, 200), (base + 1000, 4000), (base + (300 << 10) + 7, 100_001), (base, 5)] {
            let e = try extents(offset, count, flags: reqOne)
            #expect(
                e.count == 1 && e.first.map { Int($0.length) <= count && $0.length > 0 } == true,
                "REQ_ONE \(count)@\(offset): \(e)")
        }
        // Unaligned offset and length: extents start at the offset and cover the range.
        let odd = try extents(base + 1001, 700_000)
        #expect(odd.map { Int($0.length) }.reduce(0, +) >= 700_000, "extents \(odd)")
        #expect(odd.first.map { Int($0.length) } == (256 << 10) - 1001, "first extent ends at the hole: \(odd)")
        // The whole export.
        let whole = try extents(0, size)
        #expect(whole.map { Int($0.length) }.reduce(0, +) == size, "whole-export extents \(whole)")
    }
}
