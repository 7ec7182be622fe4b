import ConcurrencyHelpers
import DMA
import NVMe
import NVMeController
import NVMeHost
import TestSupport
import Testing

/// The headline figure: MMIO doorbell writes per command, with and without the
/// doorbell buffer, on a busy queue (32 requests in flight on one pair).
@Suite(.timeLimit(.minutes(30))) struct CounterTests {
    static let inFlight = 32
    static let perTask = 60

    private func busyQueue(shadow: Bool) async throws -> (HostStatistics, ControllerStatistics) {
        var c = Rig.Config()
        c.shadow = shadow
        c.depth = 64  // 63 slots: the 32 requests never wait for one
        let rig = try Rig(c)
        defer { rig.close() }
        let qp = rig.qp
        let before = rig.controller.counters.snapshot()
        try await guarded(rig) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for t in 0..<Self.inFlight {
                    group.addTask {
                        let data = randomBytes(4096, seed: UInt64(t))
                        for i in 0..<Self.perTask {
                            let lba = UInt64((t * Self.perTask + i) * 8)
                            if i % 2 == 0 {
                                try await qp.write(lba: lba, data)
                            } else {
                                _ = try await qp.read(lba: lba - 8, blocks: 8)
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        return (qp.counters.snapshot(), rig.controller.counters.snapshot() - before)
    }

    @Test func shadowDoorbellsCutMMIOWritesBelowOnePerCommand() async throws {
        let (h, d) = try await busyQueue(shadow: true)
        let commands = UInt64(Self.inFlight * Self.perTask)
        #expect(h[.commandsSubmitted] == commands)
        #expect(h[.sqShadowDoorbellWrites] == commands)
        let perCommand = h.mmioDoorbellWritesPerCommand
        #expect(perCommand > 0, "the controller parks, so some doorbell writes must trap")
        #expect(perCommand < 0.9, "MMIO doorbell writes per command \(perCommand)")
        // Host and device agree on the traps.
        #expect(d[.mmioSQTailDoorbellWrites] == h[.sqMMIODoorbellWrites])
        #expect(d[.mmioCQHeadDoorbellWrites] == h[.cqMMIODoorbellWrites])
        #expect(d[.reads] + d[.writes] == commands)
    }

    @Test func withoutShadowDoorbellsEveryCommandTraps() async throws {
        let (h, d) = try await busyQueue(shadow: false)
        let commands = UInt64(Self.inFlight * Self.perTask)
        #expect(h[.commandsSubmitted] == commands)
        #expect(h[.sqShadowDoorbellWrites] == 0 && h[.cqShadowDoorbellWrites] == 0)
        #expect(h[.sqMMIODoorbellWrites] == commands, "one SQ tail write per command")
        #expect(d[.mmioSQTailDoorbellWrites] == commands)
        #expect(h[.cqMMIODoorbellWrites] > 0)
        #expect(h.mmioDoorbellWritesPerCommand >= 1)
    }
}
