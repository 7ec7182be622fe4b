import ConcurrencyHelpers
import Foundation
import NBDProtocol
import NBDServer
import Testing

/// ``NBDRequestObserver`` as a server calls it: once per answered request, on
/// the right export, with the request's type and a plausible latency; never for
/// requests refused before any work.
@Suite("request observer", .timeLimit(.minutes(30)))
struct RequestObserverTests {
    final class Recorder: NBDRequestObserver {
        let seen = Locked<[(export: Int, type: NBDCommandType, nanoseconds: UInt64)]>([])
        func requestAnswered(export: Int, type: NBDCommandType, nanoseconds: UInt64) {
            seen.withLock { $0.append((export, type, nanoseconds)) }
        }
    }

    @Test("one report per answered request, by export and type", arguments: Transport.allCases)
    func reportsEveryAnsweredRequest(transport: Transport) throws {
        let recorder = Recorder()
        let exports = [ServerFixture.defaultExport, ExportSpec(name: "b", size: 16 << 20, blockSize: 512)]
        try withServer(exports: exports, configure: { $0.requestObserver = recorder }) { fixture in
            let b = try fixture.client(transport, export: "b", strict: false)
            try b.pwrite([UInt8](repeating: 7, count: 4096), offset: 0)
            _ = try b.pread(count: 4096, offset: 0)
            try b.flush()
            try b.trim(count: 4096, offset: 8192)
            try b.zero(count: 4096, offset: 16384)
            try b.cache(count: 4096, offset: 0)
            _ = try b.blockStatus(count: 65536, offset: 0)
            // Refused by validation (past the end): answered, but never started.
            #expect(throws: LibNBDError.self) { _ = try b.pread(count: 512, offset: 16 << 20) }
            let a = try fixture.client(transport, export: "")
            _ = try a.pread(count: 512, offset: 0)
            try a.shutdown()
            try b.shutdown()

            let seen = recorder.seen.withLock { $0 }
            #expect(seen.map(\.export) == [1, 1, 1, 1, 1, 1, 1, 0])
            #expect(seen.map(\.type) == [.write, .read, .flush, .trim, .writeZeroes, .cache, .blockStatus, .read])
            #expect(seen.allSatisfy { $0.nanoseconds > 0 && $0.nanoseconds < 10_000_000_000 })
            let counted = fixture.statistics(export: "b").nbd
            #expect(counted.requests == 7 && counted[.errors] == 1)
        }
    }

    @Test("4 connections in parallel on 2 queue pairs: every request reported once")
    func parallelConnections() throws {
        let recorder = Recorder()
        try withServer(queues: 2, configure: { $0.requestObserver = recorder }) { fixture in
            let failures = Locked(0)
            DispatchQueue.concurrentPerform(iterations: 4) { i in
                do {
                    let c = try fixture.client(i % 2 == 0 ? .unix : .tcp)
                    for k in 0..<500 { _ = try c.pread(count: 4096, offset: UInt64((k * 7 + i) % 1000) * 4096) }
                    try c.shutdown()
                } catch {
                    failures.withLock { $0 += 1 }
                }
            }
            #expect(failures.withLock { $0 } == 0)
            let seen = recorder.seen.withLock { $0 }
            #expect(seen.count == 2000)
            #expect(UInt64(seen.count) == fixture.statistics().nbd[.reads])
            #expect(seen.allSatisfy { $0.export == 0 && $0.type == .read })
        }
    }
}
