import CNBD
import ConcurrencyHelpers
import DMA
import Foundation
import NBDProtocol
import NBDServer
import NIOCore
import Synchronization
import TestSupport
import Testing

/// Several connections, many requests in flight, and shutdown under load.
@Suite("NBD server concurrency and shutdown", .timeLimit(.minutes(30)))
struct ConcurrencyTests {
    static let size = 64 << 20

    @Test("two connections (multi-conn) see each other's flushed writes", arguments: Doorbells.allCases)
    func multiConn(doorbells: Doorbells) throws {
        try withServer(exports: [ExportSpec(name: "", size: UInt64(Self.size))], doorbells: doorbells, queues: 2) { f in
            let a = try f.client(.tcp)
            let b = try f.client(.unix, structured: false)
            #expect(try a.canMultiConn && b.canMultiConn)
            let seed = TestSeed.fixed(77)
            var rng = seed.generator()
            for round in 0..<8 {
                let (writer, reader) = round % 2 == 0 ? (a, b) : (b, a)
                let offset = Int.random(in: 0..<(Self.size - (1 << 20)), using: &rng)
                let data = randomBytes(Int.random(in: 1...(1 << 20), using: &rng), using: &rng)
                try writer.pwrite(data, offset: UInt64(offset), flags: round % 4 == 1 ? UInt32(LIBNBD_CMD_FLAG_FUA) : 0)
                if round % 4 != 1 { try writer.flush() }
                expectBytes(
                    try reader.pread(count: data.count, offset: UInt64(offset)), data,
                    "round \(round), \(seed)")
            }
            // Trims and zeroes are visible too.
            try a.trim(count: 1 << 20, offset: 0)
            try a.flush()
            expectZeroes(try b.pread(count: 1 << 20, offset: 0), "trimmed through the other connection")
            #expect(f.statistics().nbd[.connections] == 2)
        }
    }

    @Test(
        "64 requests in flight, mixed reads and writes on disjoint ranges",
        arguments: Doorbells.allCases, [true, false])
    func sixtyFourInFlight(doorbells: Doorbells, structured: Bool) throws {
        try withServer(exports: [ExportSpec(name: "", size: UInt64(Self.size))], doorbells: doorbells) { f in
            let c = try f.client(.tcp, structured: structured)
            let seed = TestSeed.fixed(structured ? 64 : 65)
            var rng = seed.generator()
            let slot = 512 << 10
            // 64 disjoint slots; the odd ones are read, the even ones written.
            var before: [[UInt8]] = []
            var after: [[UInt8]] = []
            for i in 0..<64 {
                let length = Int.random(in: 1...slot, using: &rng)
                before.append(randomBytes(length, using: &rng))
                after.append(randomBytes(length, using: &rng))
                try c.pwrite(before[i], offset: UInt64(i * slot + (i % 3) * 7))
            }
            var readBuffers: [UnsafeMutableRawBufferPointer] = []
            var writeBuffers: [UnsafeMutableRawBufferPointer] = []
            defer {
                for b in readBuffers + writeBuffers { b.deallocate() }
            }
            var cookies: [(Int64, Int)] = []
            for i in 0..<64 {
                let offset = UInt64(i * slot + (i % 3) * 7)
                if i % 2 == 1 {
                    let b = UnsafeMutableRawBufferPointer.allocate(byteCount: before[i].count, alignment: 16)
                    b.initializeMemory(as: UInt8.self, repeating: 0xA5)
                    readBuffers.append(b)
                    cookies.append((try c.aioPread(b, offset: offset), i))
                } else {
                    let b = UnsafeMutableRawBufferPointer.allocate(byteCount: after[i].count, alignment: 16)
                    after[i].withUnsafeBytes { b.copyMemory(from: $0) }
                    writeBuffers.append(b)
                    cookies.append(
                        (
                            try c.aioPwrite(
                                UnsafeRawBufferPointer(b), offset: offset,
                                flags: i % 8 == 0 ? UInt32(LIBNBD_CMD_FLAG_FUA) : 0), i
                        ))
                }
            }
            var peak = c.aioInFlight
            var pending = cookies
            let deadline = Date().addingTimeInterval(60)
            while !pending.isEmpty && Date() < deadline {
                try c.poll(timeoutMilliseconds: 1000)
                peak = max(peak, c.aioInFlight)
                pending = try pending.filter { try !c.aioCommandCompleted($0.0) }
            }
            #expect(pending.isEmpty, "\(pending.count) requests did not complete")
            #expect(peak >= 32, "requests in flight at once: \(peak)")
            var r = 0
            for i in stride(from: 1, to: 64, by: 2) {
                expectBytes(Array(readBuffers[r]), before[i], "aio read \(i), \(seed)")
                r += 1
            }
            for i in 0..<64 {
                let got = try c.pread(count: before[i].count, offset: UInt64(i * slot + (i % 3) * 7))
                expectBytes(got, i % 2 == 0 ? after[i] : before[i], "slot \(i) afterwards, \(seed)")
            }
            #expect(f.statistics().nbd[.errors] == 0)
        }
    }

    @Test("back-pressure: 64 pipelined requests complete with only 2 requests / 1 MiB allowed in flight")
    func backPressure() throws {
        try withServer(
            exports: [ExportSpec(name: "", size: UInt64(Self.size))],
            configure: {
                $0.limits.maximumInFlightRequests = 2
                $0.limits.maximumInFlightBytes = 1 << 20
            }
        ) { f in
            let raw = try f.raw(.tcp)
            try raw.handshake()
            let seed = TestSeed.fixed(3)
            var rng = seed.generator()
            var b = ByteBuffer()
            var data: [[UInt8]] = []
            for i in 0..<64 {
                data.append(randomBytes(512 << 10, using: &rng))
                raw.encode(
                    NBDRequest(type: .write, cookie: UInt64(i), offset: UInt64(i) * (512 << 10), length: 512 << 10),
                    payload: data[i], into: &b)
            }
            for i in 0..<64 {
                raw.encode(
                    NBDRequest(
                        type: .read, cookie: UInt64(100 + i), offset: UInt64(i) * (512 << 10), length: 512 << 10),
                    into: &b)
            }
            // Sent from another thread: the server stops reading while replies are unread.
            let bytes = b
            let sender = Thread { try? raw.send(bytes) }
            sender.start()
            var writes = 0
            var reads: [UInt64: [UInt8]] = [:]
            for _ in 0..<128 {
                let r = try raw.readReply()
                #expect(r.error == .success, "cookie \(r.cookie): \(r.error)")
                if r.cookie < 100 {
                    writes += 1
                } else {
                    reads[r.cookie] = readData(r, offset: (r.cookie - 100) * (512 << 10), count: 512 << 10)
                }
            }
            #expect(writes == 64 && reads.count == 64)
            // Writes and reads of the same range may run in any order (NBD does not
            // order them); read everything again now that all writes are done.
            let c = try f.client(.unix)
            for i in 0..<64 {
                expectBytes(
                    try c.pread(count: 512 << 10, offset: UInt64(i) * (512 << 10)), data[i],
                    "slot \(i), \(seed)")
            }
        }
    }

    @Test("8 connections on 2 queue pairs in parallel threads", arguments: Doorbells.allCases)
    func parallelConnections(doorbells: Doorbells) throws {
        try withServer(
            exports: [ExportSpec(name: "", size: UInt64(Self.size), blockSize: 4096)], doorbells: doorbells,
            queues: 2
        ) { f in
            let failures = Shared<[String]>([])
            let finished = Shared<Int>(0)
            let seed = TestSeed.fixed(1000)
            for t in 0..<8 {
                let thread = Thread {
                    do {
                        let c = try f.client(t % 2 == 0 ? .tcp : .unix, structured: t % 4 < 2)
                        var rng = seed.generator(stream: UInt64(t))
                        let base = t * (8 << 20)
                        var shadow = Shadow(size: 8 << 20)
                        for _ in 0..<40 {
                            let length = Int.random(in: 1...(256 << 10), using: &rng)
                            let offset = Int.random(in: 0..<((8 << 20) - length), using: &rng)
                            let data = randomBytes(length, using: &rng)
                            try c.pwrite(data, offset: UInt64(base + offset))
                            shadow.write(data, at: offset)
                            if Int.random(in: 0..<4, using: &rng) == 0 {
                                try c.zero(count: 4096, offset: UInt64(base + offset / 4096 * 4096))
                                shadow.zero(4096, at: offset / 4096 * 4096)
                            }
                        }
                        let got = try c.pread(count: 8 << 20, offset: UInt64(base))
                        if got != shadow.bytes {
                            let i = got.indices.first { got[$0] != shadow.bytes[$0] }!
                            failures.withLock { $0.append("connection \(t): first difference at \(i)") }
                        }
                    } catch {
                        failures.withLock { $0.append("connection \(t): \(error)") }
                    }
                    finished.withLock { $0 += 1 }
                }
                thread.start()
            }
            #expect(eventually(seconds: 90) { finished.value == 8 })
            #expect(failures.value.isEmpty, "\(failures.value), \(seed)")
            #expect(f.statistics().nbd[.connections] == 8)
        }
    }

    @Test("concurrent unaligned writes into the same blocks from two connections keep every byte")
    func concurrentReadModifyWrite() throws {
        try withServer(exports: [ExportSpec(name: "", size: UInt64(Self.size), blockSize: 4096)], queues: 2) { f in
            let a = try f.client(.tcp)
            let b = try f.client(.unix, structured: false)
            // 128 writes of 1...31 bytes at disjoint offsets inside blocks 1 and 2, half
            // through each connection, all in flight at once.
            let seed = TestSeed.fixed(12)
            var rng = seed.generator()
            var expected = [UInt8](repeating: 0, count: 8192)
            var buffers: [UnsafeMutableRawBufferPointer] = []
            defer { for p in buffers { p.deallocate() } }
            var cookies: [(NBDClient, Int64)] = []
            for i in 0..<128 {
                let length = Int.random(in: 1...31, using: &rng)
                let offset = i * 64 + Int.random(in: 0...(63 - length), using: &rng)
                let data = randomBytes(length, using: &rng).map { $0 | 1 }
                expected.replaceSubrange(offset..<(offset + length), with: data)
                let p = UnsafeMutableRawBufferPointer.allocate(byteCount: length, alignment: 1)
                data.withUnsafeBytes { p.copyMemory(from: $0) }
                buffers.append(p)
                let c = i % 2 == 0 ? a : b
                cookies.append((c, try c.aioPwrite(UnsafeRawBufferPointer(p), offset: UInt64(4096 + offset))))
            }
            var pending = cookies
            let deadline = Date().addingTimeInterval(60)
            while !pending.isEmpty && Date() < deadline {
                try a.poll(timeoutMilliseconds: 10)
                try b.poll(timeoutMilliseconds: 10)
                pending = try pending.filter { try !$0.0.aioCommandCompleted($0.1) }
            }
            #expect(pending.isEmpty)
            expectBytes(
                try a.pread(count: 8192, offset: 4096), expected,
                "bytes written by 128 concurrent RMWs, \(seed)")
            #expect(f.statistics().nbd[.unalignedRequests] >= 128)
        }
    }

    @Test(
        "shutdown with requests in flight: each completes or gets ESHUTDOWN, nothing hangs",
        arguments: Doorbells.allCases)
    func shutdownUnderLoad(doorbells: Doorbells) throws {
        let f = try ServerFixture(exports: [ExportSpec(name: "", size: UInt64(Self.size))], doorbells: doorbells)
        defer { f.stop() }
        let raw = try f.raw(.unix)
        try raw.handshake()
        let c = try f.client(.tcp)
        // Raw: 64 writes of 256 KiB in one stream, read back on another thread.
        var b = ByteBuffer()
        let payload = [UInt8](repeating: 0x5A, count: 256 << 10)
        for i in 0..<64 {
            raw.encode(
                NBDRequest(type: .write, cookie: UInt64(i), offset: UInt64(i) * (256 << 10), length: 256 << 10),
                payload: payload, into: &b)
        }
        try raw.send(b)
        let rawReplies = Shared<[UInt64: NBDErrno]>([:])
        let rawEnd = Shared<String>("")
        let rawDone = Flag()
        raw.timeoutMilliseconds = 20_000
        let reader = Thread {
            do {
                while true {
                    let r = try raw.readReply()
                    rawReplies.withLock { $0[r.cookie] = r.error }
                }
            } catch is RawClient.Closed {
                rawEnd.withLock { $0 = "closed" }
            } catch {
                rawEnd.withLock { $0 = "\(error)" }
            }
            rawDone.set()
        }
        reader.start()
        // libnbd: 64 reads and writes in flight (libnbd sends some only when polled).
        let buffers = (0..<64).map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: 256 << 10, alignment: 16) }
        defer { for b in buffers { b.deallocate() } }
        var cookies: [Int64] = []
        for (i, buffer) in buffers.enumerated() {
            let offset = UInt64(32 << 20) + UInt64(i) * (256 << 10)
            cookies.append(
                i % 2 == 0
                    ? try c.aioPread(buffer, offset: offset)
                    : try c.aioPwrite(UnsafeRawBufferPointer(buffer), offset: offset))
        }
        // Shut down from another thread while the requests are being served.
        let done = Flag()
        let started = Date()
        let stopper = Thread {
            f.stop(graceSeconds: 10); done.set()
        }
        stopper.start()

        var outcomes: [Int32] = []
        var pending = cookies
        let deadline = Date().addingTimeInterval(30)
        while !pending.isEmpty && Date() < deadline && !c.isDead && !c.isClosed {
            _ = try? c.poll(timeoutMilliseconds: 500)
            pending = pending.filter { cookie in
                do {
                    if try c.aioCommandCompleted(cookie) { outcomes.append(0); return false }
                    return true
                } catch let error as LibNBDError {
                    outcomes.append(error.errno)
                    return false
                } catch {
                    Issue.record("\(error)")
                    return false
                }
            }
        }
        #expect(pending.isEmpty, "\(pending.count) libnbd requests got no reply (connection dead: \(c.isDead))")
        #expect(outcomes.allSatisfy { $0 == 0 || $0 == ESHUTDOWN }, "libnbd outcomes \(outcomes.sorted())")
        #expect(eventually(seconds: 15) { rawDone.isSet })
        #expect(rawEnd.value == "closed", "raw connection: \(rawEnd.value)")
        let replies = rawReplies.value
        #expect(replies.count == 64, "raw replies: \(replies.count) of 64")
        #expect(replies.values.allSatisfy { $0 == .success || $0 == .eshutdown }, "\(replies)")
        #expect(eventually(seconds: 15) { done.isSet }, "server shutdown did not return")
        let seconds = Date().timeIntervalSince(started)
        #expect(seconds < WaitScale.seconds(8), "shutdown took \(seconds) s")
    }

    @Test("requests after shutdown began get ESHUTDOWN until the client disconnects or the linger ends")
    func newRequestsDuringShutdown() throws {
        // A 4 s linger (stretched with the waits on slow runs, so the checks below
        // compare against the linger actually configured).
        let linger = WaitScale.seconds(4)
        let f = try ServerFixture(configure: { $0.limits.shutdownLingerMilliseconds = Int64(linger * 1000) })
        defer { f.stop() }
        let polite = try f.raw(.tcp)
        try polite.handshake()
        let silent = try f.raw(.unix)
        try silent.handshake(structured: false)
        let done = Flag()
        let started = Date()
        let stopper = Thread {
            f.stop(graceSeconds: 10 + Int(linger)); done.set()
        }
        stopper.start()
        // Shutdown has begun once the listener is gone.
        #expect(eventually { (try? RawClient(tcpPort: f.port)) == nil })
        for cookie: UInt64 in 1...3 {
            let r = try polite.roundTrip(NBDRequest(type: .read, cookie: cookie, offset: 0, length: 4096))
            #expect(r.error == .eshutdown, "request \(cookie) during shutdown: \(r.error)")
        }
        let w = try polite.roundTrip(NBDRequest(type: .write, cookie: 4, offset: 0, length: 3), payload: [1, 2, 3])
        #expect(w.error == .eshutdown)
        // The client's soft disconnect ends the linger at once.
        try polite.sendRequest(NBDRequest(type: .disconnect, cookie: 5, offset: 0, length: 0))
        #expect(polite.closesWithoutReply(milliseconds: 2500))
        let politeClosed = Date().timeIntervalSince(started)
        #expect(politeClosed < linger, "DISC ends the \(linger) s linger early (closed after \(politeClosed) s)")
        // The idle connection is closed when the linger ends; then shutdown returns.
        #expect(silent.waitForClose(milliseconds: 8000))
        #expect(eventually(seconds: 10) { done.isSet })
        let seconds = Date().timeIntervalSince(started)
        #expect(
            seconds > linger - 0.5 && seconds < linger + WaitScale.seconds(5),
            "shutdown took \(seconds) s with a \(linger) s linger")
        let stats = f.statistics().nbd
        #expect(
            stats[.writes] == 0 && stats[.bytesWritten] == 0 && stats[.errors] == 4,
            "refused requests did nothing: \(stats)")
    }
}

/// A one-way flag threads can set and tests can poll.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}
