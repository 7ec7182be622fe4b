import DMA
import NVMe
import NVMeHost
import TestSupport
import Testing

@testable import NVMeController

/// A small arena and helpers to lay PRP lists out by hand.
final class PRPArena {
    let memory: HostMemory
    let page = UInt64(HostMemory.pageSize)

    init(bytes: Int = 32 << 20) throws {
        memory = try HostMemory(byteCount: bytes, contiguousBytes: 1 << 20)
    }

    func allocate(_ n: Int) -> [UInt64] {
        var out: [UInt64] = []
        precondition(memory.allocatePages(n, into: &out))
        return out
    }

    /// Writes `entries` as little-endian u64s at `address`.
    func store(_ entries: [UInt64], at address: UInt64) {
        let p = memory.pointer(at: address, length: entries.count * 8)!
        for (i, e) in entries.enumerated() {
            p.storeBytes(of: e.littleEndian, toByteOffset: i * 8, as: UInt64.self)
        }
    }

    /// The first bus address past the arena.
    var end: UInt64 { HostMemory.busBase + UInt64(memory.byteCount) }

    /// Walks and returns the status and the mapping as (bus address, length) pairs.
    func walk(prp1: UInt64, prp2: UInt64, length: Int) -> (NVMeStatus?, [(UInt64, Int)]) {
        var segments: [DMASegment] = []
        let status = PRPWalker.map(prp1: prp1, prp2: prp2, length: length, memory: memory, into: &segments)
        let base = memory.pointer(at: HostMemory.busBase, length: 0)!
        return (status, segments.map { (HostMemory.busBase + UInt64(base.distance(to: $0.pointer)), $0.length) })
    }

    /// Splits a mapping into (page-aligned bus address of each 4 KiB piece, bytes in it).
    func pieces(_ segments: [(UInt64, Int)]) -> [(UInt64, Int)] {
        var out: [(UInt64, Int)] = []
        for (address, length) in segments {
            var a = address
            var left = length
            while left > 0 {
                let n = min(left, Int(page - a % page))
                out.append((a, n))
                a += UInt64(n)
                left -= n
            }
        }
        return out
    }
}

/// `PRPWalker.map`: NVMe Base Specification 2.0 §4.1.1 as QEMU's `nvme_map_prp` walks it.
@Suite struct PRPWalkerTests {
    @Test func onePageWithOffset() throws {
        let a = try PRPArena()
        let p = a.allocate(1)[0]
        let (s, segs) = a.walk(prp1: p + 512, prp2: 0xDEAD_BEEF, length: 1024)  // PRP2 unused
        #expect(s == nil)
        #expect(segs.map(\.0) == [p + 512] && segs.map(\.1) == [1024])
        // Up to the end of the page exactly.
        let (s2, segs2) = a.walk(prp1: p + 4092, prp2: 0, length: 4)
        #expect(s2 == nil && segs2.map(\.1) == [4])
        // Zero length maps nothing, whatever the pointers.
        let (s3, segs3) = a.walk(prp1: 3, prp2: 5, length: 0)
        #expect(s3 == nil && segs3.isEmpty)
    }

    @Test func offsetSpillsIntoPRP2() throws {
        let a = try PRPArena()
        let p = a.allocate(2)
        let (s, segs) = a.walk(prp1: p[0] + 3072, prp2: p[1], length: 2048)
        #expect(s == nil)
        #expect(a.pieces(segs).map(\.0) == [p[0] + 3072, p[1]])
        #expect(a.pieces(segs).map(\.1) == [1024, 1024])
    }

    @Test func exactlyTwoPages() throws {
        let a = try PRPArena()
        let p = a.allocate(2)
        let (s, segs) = a.walk(prp1: p[0], prp2: p[1], length: 8192)
        #expect(s == nil)
        #expect(a.pieces(segs).map(\.0) == [p[0], p[1]])
        #expect(segs.reduce(0) { $0 + $1.1 } == 8192)
        // Two pages, PRP2 misaligned: Invalid PRP Offset.
        #expect(a.walk(prp1: p[0], prp2: p[1] + 8, length: 8192).0 == .invalidPRPOffset)
        // An offset in PRP1 with two pages' worth of data needs three pages: PRP2 is a list then.
        let list = a.allocate(1)[0]
        let data = a.allocate(2)
        a.store(data, at: list)
        let (s2, segs2) = a.walk(prp1: p[0] + 512, prp2: list, length: 8192)
        #expect(s2 == nil)
        #expect(a.pieces(segs2).map(\.0) == [p[0] + 512, data[0], data[1]])
        #expect(a.pieces(segs2).map(\.1) == [3584, 4096, 512])
    }

    @Test func prpList() throws {
        let a = try PRPArena()
        let list = a.allocate(1)[0]
        let data = a.allocate(5)
        a.store(Array(data[1...]), at: list)
        let (s, segs) = a.walk(prp1: data[0], prp2: list, length: 5 * 4096 - 100)
        #expect(s == nil)
        let pieces = a.pieces(segs)
        #expect(pieces.map(\.0) == data)
        #expect(pieces.last?.1 == 4096 - 100)
    }

    /// A list that starts inside its page holds entries up to the page end; the last
    /// one chains to the next list page when more than one page is left.
    @Test func listStartingMidPage() throws {
        let a = try PRPArena()
        let lists = a.allocate(2)
        let data = a.allocate(6)
        let start = lists[0] + 4096 - 24  // three entries left in this page
        a.store([data[1], data[2], lists[1]], at: start)
        a.store(Array(data[3...]), at: lists[1])
        let (s, segs) = a.walk(prp1: data[0], prp2: start, length: 6 * 4096)
        #expect(s == nil)
        #expect(a.pieces(segs).map(\.0) == data)

        // Exactly one page left at the last entry: it is data, not a chain pointer.
        let start2 = lists[0] + 4096 - 16
        a.store([data[1], data[2]], at: start2)
        let (s2, segs2) = a.walk(prp1: data[0], prp2: start2, length: 3 * 4096)
        #expect(s2 == nil)
        #expect(a.pieces(segs2).map(\.0) == Array(data[0..<3]))

        // The list pointer itself must be qword aligned.
        #expect(a.walk(prp1: data[0], prp2: start + 4, length: 6 * 4096).0 == .invalidPRPOffset)
        // A list starting at the last qword of a page holds only the chain pointer.
        a.store([lists[1]], at: lists[0] + 4088)
        a.store(Array(data[1...]), at: lists[1])
        let (s3, segs3) = a.walk(prp1: data[0], prp2: lists[0] + 4088, length: 6 * 4096)
        #expect(s3 == nil)
        #expect(a.pieces(segs3).map(\.0) == data)
    }

    @Test(arguments: [1024, 1023 + 511, 1100, 1535, 1536, 2000])
    func chainedListPages(pages: Int) throws {
        let a = try PRPArena()
        let data = a.allocate(pages)
        let listCount = PRPList.listPagesNeeded(forDataPages: pages)
        let lists = a.allocate(listCount)
        // Lay the lists out by hand: 511 entries + chain in every page but the last.
        var rest = Array(data.dropFirst())
        for (i, l) in lists.enumerated() {
            if i == lists.count - 1 {
                #expect(rest.count <= 512)
                a.store(rest, at: l)
            } else {
                a.store(Array(rest.prefix(511)) + [lists[i + 1]], at: l)
                rest.removeFirst(511)
            }
        }
        let (s, segs) = a.walk(prp1: data[0], prp2: lists[0], length: pages * 4096)
        #expect(s == nil)
        expectPages(a.pieces(segs).map(\.0), data)
        #expect(listCount == (pages - 1 <= 512 ? 1 : 1 + (pages - 1 - 512 + 510) / 511))
        #expect(pages < 1024 || listCount >= 2)
        if pages > 1023 + 1 { #expect(listCount >= 3) }
    }

    @Test func misalignedPointersAreInvalidPRPOffset() throws {
        let a = try PRPArena()
        let data = a.allocate(4)
        let lists = a.allocate(2)
        // PRP1 not dword aligned.
        for bad in [UInt64(1), 2, 3, 6] {
            #expect(a.walk(prp1: data[0] + bad, prp2: 0, length: 16).0 == .invalidPRPOffset)
        }
        // PRP2 as a data pointer with a page offset.
        #expect(a.walk(prp1: data[0], prp2: data[1] + 512, length: 4096 + 512).0 == .invalidPRPOffset)
        // A list entry with a page offset.
        a.store([data[1], data[2] + 8, data[3]], at: lists[0])
        #expect(a.walk(prp1: data[0], prp2: lists[0], length: 4 * 4096).0 == .invalidPRPOffset)
        // The chain pointer with a page offset.
        var entries = Array(repeating: data[1], count: 511)
        entries.append(lists[1] + 64)
        a.store(entries, at: lists[0])
        #expect(a.walk(prp1: data[0], prp2: lists[0], length: 600 * 4096).0 == .invalidPRPOffset)
    }

    @Test func addressesOutsideTheArenaAreDataTransferErrors() throws {
        let a = try PRPArena()
        let data = a.allocate(3)
        let list = a.allocate(1)[0]
        let lastPage = a.end - 4096
        #expect(a.walk(prp1: 0x1000, prp2: 0, length: 512).0 == .dataTransferError)
        #expect(a.walk(prp1: 0, prp2: 0, length: 512).0 == .dataTransferError)
        #expect(a.walk(prp1: a.end, prp2: 0, length: 512).0 == .dataTransferError)
        #expect(a.walk(prp1: UInt64.max - 3, prp2: 0, length: 512).0 == .dataTransferError)
        #expect(a.walk(prp1: lastPage, prp2: 0, length: 4096).0 == nil)
        // PRP2 data page outside.
        #expect(a.walk(prp1: data[0], prp2: a.end, length: 8192).0 == .dataTransferError)
        #expect(a.walk(prp1: data[0], prp2: 0, length: 8192).0 == .dataTransferError)
        // The list itself outside, a list entry outside, and a chain pointer outside.
        #expect(a.walk(prp1: data[0], prp2: a.end + 4096, length: 3 * 4096).0 == .dataTransferError)
        a.store([data[1], 0x10_0000_0000_0000], at: list)
        #expect(a.walk(prp1: data[0], prp2: list, length: 3 * 4096).0 == .dataTransferError)
        a.store(Array(repeating: data[1], count: 511) + [a.end], at: list)
        #expect(a.walk(prp1: data[0], prp2: list, length: 600 * 4096).0 == .dataTransferError)
        a.store(Array(repeating: data[1], count: 511) + [0], at: list)
        #expect(a.walk(prp1: data[0], prp2: list, length: 600 * 4096).0 == .dataTransferError)
    }

    /// A chain pointer that points back to its own list page: the walk is bounded by
    /// the transfer length, never by the list structure.
    @Test func selfReferencingChainTerminates() throws {
        let a = try PRPArena()
        let data = a.allocate(1)[0]
        let list = a.allocate(1)[0]
        a.store(Array(repeating: data, count: 511) + [list], at: list)
        let length = 64 << 20
        let (s, segs) = a.walk(prp1: data, prp2: list, length: length)
        #expect(s == nil)
        #expect(segs.reduce(0) { $0 + $1.1 } == length)
        #expect(Set(segs.map(\.0)) == [data])
        // Every entry (including the chain slot) pointing at the list itself.
        a.store(Array(repeating: list, count: 512), at: list)
        let (s2, segs2) = a.walk(prp1: data, prp2: list, length: 8 << 20)
        #expect(s2 == nil)
        #expect(segs2.reduce(0) { $0 + $1.1 } == 8 << 20)
    }
}

/// `PRPList.build` (the driver) against `PRPWalker.map` (the device).
@Suite struct PRPListRoundTripTests {
    @Test func everyLengthFrom1To2000Pages() throws {
        let a = try PRPArena(bytes: 64 << 20)
        let seed = TestSeed.fixed(42)
        var rng = seed.generator()
        var pool = a.allocate(2000)
        let listPool = a.allocate(8)
        var counts = Array(1...600) + [1022, 1023, 1024, 1025, 1533, 1534, 1535, 1536, 1537, 1999, 2000]
        for _ in 0..<40 { counts.append(Int.random(in: 601...2000, using: &rng)) }
        for n in counts {
            pool.shuffle(using: &rng)
            let pages = Array(pool.prefix(n))
            let needed = PRPList.listPagesNeeded(forDataPages: n)
            let lists = Array(listPool.shuffled(using: &rng).prefix(needed))
            let (prp1, prp2) = PRPList.build(pages: pages, listPages: lists, memory: a.memory)
            // A random tail so the last page is partly used.
            let length = n * 4096 - Int.random(in: 0..<4096, using: &rng)
            let (s, segs) = a.walk(prp1: prp1, prp2: prp2, length: length)
            #expect(s == nil, "\(n) pages, \(seed)")
            let got = a.pieces(segs).map(\.0)
            if got != pages {
                expectPages(got, pages, "\(n) pages, \(seed)")
                return
            }
            // The walk uses exactly the list pages the builder said it needs.
            if n > 2 { #expect(prp2 == lists[0], "\(seed)") } else if n == 2 { #expect(prp2 == pages[1], "\(seed)") }
        }
    }

    @Test func listPagesNeededMatchesCapacity() {
        // 511 entries per list page plus the chain pointer, 512 in the last.
        for n in 1...5000 {
            let l = PRPList.listPagesNeeded(forDataPages: n)
            if n <= 2 { #expect(l == 0); continue }
            let entries = n - 1
            #expect(511 * l + 1 >= entries, "\(n)")
            #expect(l == 1 || 511 * (l - 1) + 1 < entries, "\(n)")
        }
    }
}

func expectPages(
    _ got: [UInt64], _ expected: [UInt64], _ note: String = "",
    sourceLocation: SourceLocation = #_sourceLocation
) {
    guard got != expected else { return }
    let first =
        zip(got, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(got.count, expected.count)
    Issue.record(
        "page lists differ (\(got.count) vs \(expected.count) pages) first at \(first) \(note)",
        sourceLocation: sourceLocation)
}
