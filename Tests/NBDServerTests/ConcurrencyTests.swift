import CNBD
import Foundation
import NBDProtocol
import NBDServer
import NIOCore
import Synchronization
import Testing

/// Several connections, many requests in flight, and shutdown under load.
@Suite("NBD server concurrency and shutdown", .timeLimit(.minutes(2)))
struct ConcurrencyTests {
    static let size = 64 << 20

    @Test("two connections (multi-conn) see each other's flushed writes", arguments: Doorbells.allCases)
    func multiConn(doorbells: Doorbells) throws {
        try withServer(exports: [ExportSpec(name: "", size: UInt64(Self.size))], doorbells: doorbells, queues: 2) { f in
            let a = try f.client(.tcp)
            let b = try f.client(.unix, structured: false)
            #expect(try a.canMultiConn && b.canMultiConn)
            var rng = SeededGenerator(seed: 77)
            for round in 0..<8 {
                let (writer, reader) = round % 2 == 0 ? (a, b) : (b, a)
                let offset = Int.random(in: 0..<(Self.size - (1 << 20)), using: &rng)
                let data = randomBytes(Int.random(in: 1...(1 << 20), using: &rng), &rng)
                try writer.pwrite(data, offset: UInt64(offset), flags: round % 4 == 1 ? UInt32(LIBNBD_CMD_FLAG_FUA) : 0)
                if round % 4 != 1 { try writer.flush() }
                expectBytes(try reader.pread(count: data.count, offset: UInt64(offset)), data, "round \(round)")
            }
            // Trims and zeroes are visible too.
            try a.trim(count: 1 << 20, offset: 0)
            try a.flush()
            expectZeroes(try b.pread(count: 1 << 20, offset: 0), "trimmed through the other connection")
            #expect(f.statistics().nbd.connections == 2)
        }
    }

    @Test("64 requests in flight, mixed reads and writes on disjoint ranges",
          arguments: Doorbells.allCases, [true, false])
    func sixtyFourInFlight(doorbells: Doorbells, structured: Bool) throws {
        try withServer(exports: [ExportSpec(name: "", size: UInt64(Self.size))], doorbells: doorbells) { f in
            let c = try f.client(.tcp, structured: structured)
            var rng = SeededGenerator(seed: structured ? 64 : 65)
            let slot = 512 << 10
            // 64 disjoint slots; the odd ones are read, the even ones written.
            var before: [[UInt8]] = []
            var after: [[UInt8]] = []
            for i in 0..<64 {
                let length = Int.random(in: 1...slot, using: &rng)
                before.append(randomBytes(length, &rng))
                after.append(randomBytes(length, &rng))
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
                    cookies.append((try c.aioPwrite(UnsafeRawBufferPointer(b), offset: offset,
                                                    flags: i % 8 == 0 ? UInt32(LIBNBD_CMD_FLAG_FUA) : 0), i))
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
                expectBytes(Array(readBuffers[r]), before[i], "aio read \(i)")
                r += 1
            }
            for i in 0..<64 {
                let got = try c.pread(count: before[i].count, offset: UInt64(i * slot + (i % 3) * 7))
                expectBytes(got, i % 2 == 0 ? after[i] : before[i], "slot \(i) afterwards")
            }
            #expect(f.statistics().nbd.errors == 0)
        }
    }

    @Test("shutdown with requests in flight: each completes or gets ESHUTDOWN, nothing hangs",
          arguments: Doorbells.allCases)
    func shutdownUnderLoad(doorbells: Doorbells) throws {
        let f = try ServerFixture(exports: [ExportSpec(name: "", size: UInt64(Self.size))], doorbells: doorbells)
        defer { f.stop() }
        let raw = try f.raw(.unix)
        try raw.handshake()
        let c = try f.client(.tcp)
        // Raw: 64 writes of 256 KiB in one stream.
        var b = ByteBuffer()
        let payload = [UInt8](repeating: 0x5A, count: 256 << 10)
        for i in 0..<64 {
            raw.encode(NBDRequest(type: .write, cookie: UInt64(i), offset: UInt64(i) * (256 << 10), length: 256 << 10),
                       payload: payload, into: &b)
        }
        try raw.send(b)
        // libnbd: 64 reads in flight.
        let buffers = (0..<64).map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: 256 << 10, alignment: 16) }
        defer { for b in buffers { b.deallocate() } }
        var cookies: [Int64] = []
        for (i, buffer) in buffers.enumerated() {
            cookies.append(try c.aioPread(buffer, offset: UInt64(i) * (256 << 10)))
        }
        // Shut down from another thread while the requests are being served.
        let done = Flag()
        let started = Date()
        let thread = Thread { f.stop(graceSeconds: 10); done.set() }
        thread.start()

        // The raw connection: every reply is success or ESHUTDOWN, then it closes.
        var rawReplies: [UInt64: NBDErrno] = [:]
        raw.timeoutMilliseconds = 20_000
        do {
            while true {
                let r = try raw.readReply()
                rawReplies[r.cookie] = r.error
            }
        } catch is RawClient.Closed {
        } catch {
            Issue.record("raw connection: \(error)")
        }
        #expect(rawReplies.values.allSatisfy { $0 == .success || $0 == .eshutdown }, "\(rawReplies)")

        // libnbd: every command completes, fails with ESHUTDOWN, or dies with the connection.
        var outcomes: [Int32] = []
        var pending = cookies
        let deadline = Date().addingTimeInterval(30)
        while !pending.isEmpty && Date() < deadline {
            if !c.isDead && !c.isClosed { _ = try? c.poll(timeoutMilliseconds: 500) }
            pending = pending.filter { cookie in
                do {
                    if try c.aioCommandCompleted(cookie) { outcomes.append(0); return false }
                    return !c.isDead
                } catch let error as LibNBDError {
                    outcomes.append(error.errno)
                    return false
                } catch {
                    Issue.record("\(error)")
                    return false
                }
            }
        }
        #expect(pending.isEmpty || c.isDead, "\(pending.count) libnbd requests neither completed nor failed")
        #expect(outcomes.allSatisfy { [0, ESHUTDOWN, ENOTCONN].contains($0) }, "libnbd outcomes \(outcomes)")
        #expect(eventually(seconds: 15) { done.isSet }, "server shutdown did not return")
        let seconds = Date().timeIntervalSince(started)
        #expect(seconds < 8, "shutdown took \(seconds) s")
        // Requests that were answered were executed.
        let written = rawReplies.filter { $0.value == .success }.count
        #expect(written + rawReplies.filter { $0.value == .eshutdown }.count == rawReplies.count)
    }

    @Test("requests after shutdown began get ESHUTDOWN; new connections are refused")
    func newRequestsDuringShutdown() throws {
        let f = try ServerFixture()
        defer { f.stop() }
        let raw = try f.raw(.tcp)
        try raw.handshake()
        // Keep one request in flight across the shutdown: a 32 MiB read takes a while.
        try raw.sendRequest(NBDRequest(type: .read, cookie: 1, offset: 0, length: 32 << 20))
        let done = Flag()
        let thread = Thread { f.stop(graceSeconds: 10); done.set() }
        thread.start()
        var replies: [UInt64: NBDErrno] = [:]
        do {
            try raw.sendRequest(NBDRequest(type: .read, cookie: 2, offset: 0, length: 512))
            while true {
                let r = try raw.readReply()
                replies[r.cookie] = r.error
            }
        } catch is RawClient.Closed {
        } catch {
            Issue.record("\(error)")
        }
        #expect(replies[1] == .success || replies[1] == .eshutdown, "\(replies)")
        #expect(replies[2] == nil || replies[2] == .eshutdown || replies[2] == .success, "\(replies)")
        #expect(eventually(seconds: 15) { done.isSet })
        #expect((try? f.raw(.tcp)) == nil, "the listener is closed")
    }
}

/// A one-way flag threads can set and tests can poll.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}
