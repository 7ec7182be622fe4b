import ConcurrencyHelpers
import Foundation
import NVMeController
import NVMeHost
import Testing

/// The generic counter block and its copy, and the JSON field names the two
/// layers' keys give `--stats-json` (scripts/bench, the host suite and the README
/// read them).
struct CounterBlockTests {
    enum Key: Int, CounterKey { case alpha, beta, gamma }

    @Test func countsByKey() {
        let block = CounterBlock<Key>()
        #expect(block.snapshot() == CounterValues<Key>())
        block.add(.alpha)
        block.add(.beta, 5)
        block.subtract(.beta, 2)
        block.raise(.gamma, to: 7)
        block.raise(.gamma, to: 3)
        #expect(block.load(.alpha) == 1 && block.load(.beta) == 3 && block.load(.gamma) == 7)
        let s = block.snapshot()
        #expect(s[.alpha] == 1 && s[.beta] == 3 && s[.gamma] == 7)
        #expect(s.all.map(\.key) == Key.allCases)
        #expect(s.all.map(\.value) == [1, 3, 7])
        #expect(s.description == "alpha: 1, beta: 3, gamma: 7")
    }

    @Test func valuesAddAndSubtractKeyByKeyWrapping() {
        var a = CounterValues<Key>()
        a[.alpha] = 10
        a[.beta] = 1
        var b = CounterValues<Key>()
        b[.alpha] = 4
        b[.beta] = 2
        b[.gamma] = .max
        let sum = a + b
        #expect(sum[.alpha] == 14 && sum[.beta] == 3 && sum[.gamma] == .max)
        let difference = a - b
        #expect(difference[.alpha] == 6)
        #expect(difference[.beta] == .max, "wraps as the counters do")
        #expect((sum - b) == a)
    }

    @Test func concurrentAddsAndRaisesAreNotLost() async {
        let block = CounterBlock<Key>()
        let tasks = 8
        let perTask = 10_000
        await withTaskGroup(of: Void.self) { group in
            for t in 0..<tasks {
                group.addTask {
                    for i in 0..<perTask {
                        block.add(.alpha)
                        block.add(.beta, 2)
                        block.raise(.gamma, to: UInt64(t * perTask + i))
                    }
                }
            }
        }
        #expect(block.load(.alpha) == UInt64(tasks * perTask))
        #expect(block.load(.beta) == UInt64(2 * tasks * perTask))
        #expect(block.load(.gamma) == UInt64(tasks * perTask - 1))
    }

    @Test func jsonHasOneFieldPerCaseNameAndReadsMissingFieldsAsZero() throws {
        var v = CounterValues<Key>()
        v[.alpha] = 1
        v[.gamma] = 3
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let json = try encoder.encode(v)
        #expect(String(decoding: json, as: UTF8.self) == #"{"alpha":1,"beta":0,"gamma":3}"#)
        #expect(try JSONDecoder().decode(CounterValues<Key>.self, from: json) == v)
        let older = try JSONDecoder().decode(CounterValues<Key>.self, from: Data(#"{"gamma":3,"retired":9}"#.utf8))
        #expect(older[.alpha] == 0 && older[.beta] == 0 && older[.gamma] == 3)
    }

    @Test func misnumberedKeysAreRefused() async {
        await #expect(processExitsWith: .failure) {
            enum Gap: Int, CounterKey {
                case first
                case third = 2
            }
            _ = CounterBlock<Gap>()
        }
    }

    /// The `--stats-json` field names: the names readers depend on, in one place.
    /// Renaming a case renames a JSON field; change this list only on purpose.
    @Test func statsJSONFieldNames() throws {
        #expect(
            ControllerCounter.allCases.map(\.name) == [
                "mmioSQTailDoorbellWrites", "mmioCQHeadDoorbellWrites", "mmioAdminDoorbellWrites", "mmioRegisterWrites",
                "mmioReads", "mmioMSIXWrites", "invalidDoorbellWrites", "shadowDoorbellReads", "eventIndexWrites",
                "adminCommands", "reads", "writes", "flushes", "writeZeroes", "datasetManagement", "allocationMaps",
                "otherIOCommands", "commandErrors", "bytesRead", "bytesWritten", "completionsPosted",
                "completionQueueFullStalls", "interruptsRaised", "interruptsHeld", "parks", "wakeups", "pollHits",
                "resets",
                "shutdowns", "storageOperations", "storageInFlightPeak", "inFlightLimitStalls", "flushesCoalesced",
            ])
        #expect(
            HostCounter.allCases.map(\.name) == [
                "commandsSubmitted", "completionsReaped", "sqShadowDoorbellWrites", "cqShadowDoorbellWrites",
                "sqMMIODoorbellWrites", "cqMMIODoorbellWrites", "interruptsHandled", "interruptsMerged", "waitsForSlot",
                "splitRequests", "retries", "errors",
            ])
        // The encoder writes exactly these names (no derived fields).
        let object =
            try JSONSerialization.jsonObject(with: JSONEncoder().encode(ControllerStatistics())) as? [String: Any]
        #expect(object.map { Set($0.keys) } == Set(ControllerCounter.allCases.map(\.name)))
    }

    @Test func derivedValues() {
        var c = ControllerStatistics()
        for key in [
            ControllerCounter.reads, .writes, .flushes, .writeZeroes, .datasetManagement, .allocationMaps,
            .otherIOCommands,
        ] {
            c[key] = 1
        }
        c[.adminCommands] = 100
        c[.mmioSQTailDoorbellWrites] = 3
        c[.mmioCQHeadDoorbellWrites] = 4
        c[.mmioAdminDoorbellWrites] = 100
        #expect(c.ioCommands == 7)
        #expect(c.mmioIODoorbellWrites == 7)
        var h = HostStatistics()
        #expect(h.mmioDoorbellWritesPerCommand == 0)
        h[.commandsSubmitted] = 4
        h[.sqMMIODoorbellWrites] = 1
        h[.cqMMIODoorbellWrites] = 1
        #expect(h.mmioDoorbellWritesPerCommand == 0.5)
    }
}
