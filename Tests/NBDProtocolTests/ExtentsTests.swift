import NBDProtocol
import TestSupport
import Testing

/// The pure functions from an allocation map to reply pieces: a structured
/// read's data and hole chunks, and `NBD_CMD_BLOCK_STATUS` descriptors
/// (proto.md "Structured reply chunk message types", "NBD_CMD_BLOCK_STATUS").
@Suite("NBD extents: read runs and block status")
struct ExtentsTests {
    /// An extent list written as (start, end, hole) triples.
    static func extents(_ runs: [(UInt64, UInt64, Bool)]) -> [NBDExtent] {
        runs.map { NBDExtent($0.0..<$0.1, isHole: $0.2) }
    }

    struct ReadCase: Sendable, CustomTestStringConvertible {
        var name: String
        var offset: UInt64
        var length: UInt64
        var map: [(UInt64, UInt64, Bool)]
        var expected: [(UInt64, UInt64, Bool)]
        var testDescription: String { name }
    }

    static let readCases: [ReadCase] = [
        ReadCase(name: "no map: all data", offset: 100, length: 50, map: [], expected: [(100, 150, false)]),
        ReadCase(
            name: "hole in the middle", offset: 0, length: 12,
            map: [(0, 4, false), (4, 8, true), (8, 12, false)],
            expected: [(0, 4, false), (4, 8, true), (8, 12, false)]),
        ReadCase(
            name: "clipped to the request", offset: 2, length: 8,
            map: [(0, 4, true), (4, 8, false), (8, 16, true)],
            expected: [(2, 4, true), (4, 8, false), (8, 10, true)]),
        ReadCase(
            name: "adjacent runs of one kind merge", offset: 0, length: 16,
            map: [(0, 4, true), (4, 8, true), (8, 12, false), (12, 16, false)],
            expected: [(0, 8, true), (8, 16, false)]),
        ReadCase(
            name: "what the map does not cover is data", offset: 0, length: 20,
            map: [(4, 8, true), (12, 16, true)],
            expected: [(0, 4, false), (4, 8, true), (8, 12, false), (12, 16, true), (16, 20, false)]),
        ReadCase(
            name: "map past the request", offset: 8, length: 4, map: [(0, 100, true)], expected: [(8, 12, true)]),
    ]

    @Test(arguments: readCases)
    func readRuns(_ c: ReadCase) {
        let runs = NBDExtents.readRuns(offset: c.offset, length: c.length, extents: Self.extents(c.map))
        #expect(runs == Self.extents(c.expected))
    }

    struct StatusCase: Sendable, CustomTestStringConvertible {
        var name: String
        var offset: UInt64
        var length: UInt32
        var map: [(UInt64, UInt64, Bool)]
        var exportSize: UInt64
        var requestOne = false
        /// (length, hole) descriptors.
        var expected: [(UInt32, Bool)]
        var testDescription: String { name }
    }

    static let statusCases: [StatusCase] = [
        StatusCase(
            name: "from the request's offset", offset: 4096, length: 8192,
            map: [(0, 8192, false), (8192, 16384, true)], exportSize: 16384, expected: [(4096, false), (8192, true)]),
        StatusCase(
            name: "equal states merged", offset: 0, length: 8192,
            map: [(0, 4096, true), (4096, 8192, true)], exportSize: 8192, expected: [(8192, true)]),
        StatusCase(
            name: "never past the export's end", offset: 0, length: 4096,
            map: [(0, 1 << 20, false)], exportSize: 12288, expected: [(12288, false)]),
        StatusCase(
            name: "REQ_ONE: one descriptor no longer than the request", offset: 0, length: 4096,
            map: [(0, 1 << 20, true)], exportSize: 1 << 20, requestOne: true, expected: [(4096, true)]),
        StatusCase(
            name: "REQ_ONE stops at the first state", offset: 0, length: 1 << 20,
            map: [(0, 4096, false), (4096, 1 << 20, true)], exportSize: 1 << 20, requestOne: true,
            expected: [(4096, false)]),
        StatusCase(
            name: "4 GiB run split at a granularity multiple", offset: 0, length: 1 << 20,
            map: [(0, 6 << 30, false)], exportSize: 6 << 30,
            expected: [(UInt32(UInt64(UInt32.max) & ~4095), false)]),
        StatusCase(
            name: "a map that says nothing of the offset", offset: 8192, length: 4096,
            map: [(0, 4096, false)], exportSize: 16384, expected: []),
    ]

    @Test(arguments: statusCases)
    func blockStatus(_ c: StatusCase) {
        let out = NBDExtents.blockStatus(
            offset: c.offset, length: c.length, extents: Self.extents(c.map), exportSize: c.exportSize,
            granularity: 4096, requestOne: c.requestOne)
        let expected = c.expected.map {
            NBDBlockStatusDescriptor(length: $0.0, state: $0.1 ? [.hole, .zero] : [])
        }
        #expect(out == expected)
    }

    /// Random maps: read runs tile the request exactly, alternate in kind, and
    /// agree with the map byte for byte.
    @Test func readRunsTileTheRequest() {
        let seed = TestSeed.fresh("readRunsTileTheRequest")
        var rng = seed.generator()
        for round in 0..<500 {
            var map: [(UInt64, UInt64, Bool)] = []
            var at = UInt64.random(in: 0..<64, using: &rng)
            for _ in 0..<Int.random(in: 0...8, using: &rng) {
                let end = at + UInt64.random(in: 1...64, using: &rng)
                map.append((at, end, Bool.random(using: &rng)))
                at = end + (Bool.random(using: &rng) ? UInt64.random(in: 0...16, using: &rng) : 0)
            }
            let offset = UInt64.random(in: 0..<256, using: &rng)
            let length = UInt64.random(in: 1...256, using: &rng)
            let runs = NBDExtents.readRuns(offset: offset, length: length, extents: Self.extents(map))
            func isHole(_ byte: UInt64) -> Bool { map.first { ($0.0..<$0.1).contains(byte) }?.2 ?? false }
            var covered = offset
            var ok = !runs.isEmpty
            for (i, run) in runs.enumerated() {
                ok = ok && run.offset == covered && run.length > 0
                ok = ok && (i == 0 || runs[i - 1].isHole != run.isHole)
                ok = ok && run.range.allSatisfy { isHole($0) == run.isHole }
                covered = run.range.upperBound
            }
            ok = ok && covered == offset + length
            #expect(ok, "round \(round), \(seed): map \(map), request \(offset)+\(length) → \(runs)")
            if !ok { return }
        }
    }
}
