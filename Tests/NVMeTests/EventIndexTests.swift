import NVMe
import TestSupport
import Testing

/// `EventIndex.needsEvent` against its definition: ring exactly when EventIdx lies
/// in the wrapped range [old, new) of a queue of `size` entries.
@Suite struct EventIndexTests {
    // The three sweeps below run millions of checks: each runs on a thread of its
    // own (`checkOnOwnThread`) so that the cooperative pool stays free for the
    // async tests beside it.

    /// Every (EventIdx, new, old) triple for every queue size up to 64.
    @Test func exhaustiveSmallQueues() async throws {
        try await checkOnOwnThread { findings in
            var checked = 0
            for size in 1...64 {
                for old in 0..<size {
                    for new in 0..<size {
                        for ei in 0..<size {
                            let expected = EventIndex.liesInWrappedRange(
                                eventIndex: ei, new: new, old: old, queueSize: size)
                            let actual = EventIndex.needsEvent(
                                eventIndex: UInt16(ei), new: UInt16(new), old: UInt16(old))
                            guard expected == actual else {
                                findings.check(
                                    false, "size \(size) old \(old) new \(new) ei \(ei): expected \(expected)")
                                return
                            }
                            checked += 1
                        }
                    }
                }
            }
            findings.check(checked == (1...64).reduce(0) { $0 + $1 * $1 * $1 }, "\(checked) triples checked")
        }
    }

    /// Every queue size from 1 to 4096: every (old, new) pair at the distances where
    /// the answer can change, with EventIdx at every boundary of the range and a
    /// spread of values inside and outside it; plus random triples.
    @Test func everyQueueSizeTo4096() async throws {
        let seed = TestSeed.fixed(0x4E56_4D65)
        try await checkOnOwnThread { findings in
            var rng = seed.generator()
            for size in 1...4096 {
                var olds: Set<Int> = [0, size - 1, size / 2]
                for _ in 0..<3 { olds.insert(Int(rng.next() % UInt64(size))) }
                for old in olds {
                    var distances: Set<Int> = [0, 1, size - 1, size / 2]
                    distances.insert(Int(rng.next() % UInt64(size)))
                    for d in distances where d < size {
                        let new = (old + d) % size
                        var eis: Set<Int> = [
                            old, new, (old + size - 1) % size, (new + size - 1) % size,
                            (old + 1) % size, (new + 1) % size, 0, size - 1,
                        ]
                        for _ in 0..<8 { eis.insert(Int(rng.next() % UInt64(size))) }
                        for ei in eis {
                            Self.check(&findings, size: size, old: old, new: new, ei: ei, seed: seed)
                        }
                    }
                }
            }
        }
    }

    @Test func randomTriplesUpTo65536() async throws {
        let seed = TestSeed.fixed(65536)
        try await checkOnOwnThread { findings in
            var rng = seed.generator()
            for _ in 0..<200_000 {
                let size = Int(rng.next() % 65536) + 1
                Self.check(
                    &findings, size: size, old: Int(rng.next() % UInt64(size)), new: Int(rng.next() % UInt64(size)),
                    ei: Int(rng.next() % UInt64(size)), seed: seed)
            }
            // The largest queue, at the wrap.
            Self.check(&findings, size: 65536, old: 65535, new: 0, ei: 65535)
            Self.check(&findings, size: 65536, old: 65535, new: 1, ei: 0)
            Self.check(&findings, size: 65536, old: 65534, new: 65535, ei: 0)
        }
    }

    /// Hand-worked cases from Linux's comment on `nvme_dbbuf_need_event`.
    @Test(arguments: [
        (ei: UInt16(5), new: UInt16(6), old: UInt16(5), expected: true),  // crossing exactly
        (ei: 5, new: 5, old: 5, expected: false),  // no movement
        (ei: 5, new: 10, old: 6, expected: false),  // already past
        (ei: 9, new: 10, old: 6, expected: true),  // last one
        (ei: 10, new: 10, old: 6, expected: false),  // not yet reached
        (ei: 65535, new: 2, old: 65534, expected: true),  // across the u16 wrap
    ])
    func handWorked(_ c: (ei: UInt16, new: UInt16, old: UInt16, expected: Bool)) {
        #expect(EventIndex.needsEvent(eventIndex: c.ei, new: c.new, old: c.old) == c.expected)
    }

    private static func check(
        _ findings: inout Findings, size: Int, old: Int, new: Int, ei: Int, seed: TestSeed? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let expected = EventIndex.liesInWrappedRange(eventIndex: ei, new: new, old: old, queueSize: size)
        let actual = EventIndex.needsEvent(eventIndex: UInt16(ei), new: UInt16(new), old: UInt16(old))
        findings.check(
            expected == actual, "size \(size) old \(old) new \(new) ei \(ei)\(seed.map { ", \($0)" } ?? "")",
            sourceLocation: sourceLocation)
    }
}
