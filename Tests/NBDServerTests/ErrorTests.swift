import CNBD
import Foundation
import NBDProtocol
import NBDServer
import NIOCore
import TestSupport
import Testing

/// Every error path of the NBD requests (README, "The data path"), with the errno the spec asks for.
@Suite("NBD server errors", .timeLimit(.minutes(30)))
struct ErrorTests {
    static let size = 64 << 20
    static let exports = [
        ExportSpec(name: "", size: UInt64(size), blockSize: 512),
        ExportSpec(name: "ro", size: UInt64(size), blockSize: 4096, readOnly: true),
    ]

    /// Expects `body` to fail with `errno` *from the server* (its error counter moves).
    static func expectServerError(
        _ f: ServerFixture, export: String = "", _ errno: Int32, _ what: String,
        sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
    ) {
        let before = f.errorCount(export: export)
        do {
            try body()
            Issue.record("\(what): succeeded, expected errno \(errno)", sourceLocation: sourceLocation)
        } catch let e as LibNBDError {
            #expect(e.errno == errno, "\(what): \(e)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("\(what): \(error)", sourceLocation: sourceLocation)
        }
        #expect(
            f.errorCount(export: export) == before + 1, "\(what): the server did not answer with an error",
            sourceLocation: sourceLocation)
    }

    @Test(
        "range, flag and read-only errors through libnbd (strict mode off)",
        arguments: Transport.allCases, [true, false])
    func libnbdErrors(transport: Transport, structured: Bool) throws {
        try withServer(exports: Self.exports) { f in
            let c = try f.client(transport, structured: structured, metaContext: false, strict: false)
            let size = UInt64(Self.size)
            func e(
                _ export: String, _ errno: Int32, _ what: String, sourceLocation: SourceLocation = #_sourceLocation,
                _ body: () throws -> Void
            ) {
                Self.expectServerError(f, export: export, errno, what, sourceLocation: sourceLocation, body)
            }
            e("", EINVAL, "read across the end") { _ = try c.pread(count: 4096, offset: size - 2048) }
            e("", EINVAL, "read after the end") { _ = try c.pread(count: 512, offset: size + 4096) }
            e("", EINVAL, "read with offset+length overflowing") {
                _ = try c.pread(count: 512, offset: UInt64.max - 100)
            }
            e("", ENOSPC, "write across the end") {
                try c.pwrite([UInt8](repeating: 1, count: 4096), offset: size - 1024)
            }
            e("", ENOSPC, "write after the end") { try c.pwrite([1], offset: size) }
            e("", ENOSPC, "write zeroes across the end") { try c.zero(count: 8192, offset: size - 4096) }
            e("", EINVAL, "trim across the end") { try c.trim(count: 8192, offset: size - 4096) }
            e("", EINVAL, "cache across the end") { try c.cache(count: 8192, offset: size - 4096) }
            // Flags that do not belong to the command.
            e("", EINVAL, "READ with NO_HOLE") {
                _ = try c.pread(count: 512, offset: 0, flags: UInt32(LIBNBD_CMD_FLAG_NO_HOLE))
            }
            e("", EINVAL, "WRITE with REQ_ONE") { try c.pwrite([1], offset: 0, flags: UInt32(LIBNBD_CMD_FLAG_REQ_ONE)) }
            e("", EINVAL, "TRIM with FAST_ZERO") {
                try c.trim(count: 4096, offset: 0, flags: UInt32(LIBNBD_CMD_FLAG_FAST_ZERO))
            }
            e("", EINVAL, "WRITE with DF") { try c.pwrite([1], offset: 0, flags: UInt32(LIBNBD_CMD_FLAG_DF)) }
            if !structured {
                e("", EINVAL, "DF without structured replies") {
                    _ = try c.pread(count: 512, offset: 0, flags: UInt32(LIBNBD_CMD_FLAG_DF))
                }
            }
            // The connection is still fine.
            try c.pwrite([9, 8, 7], offset: 100)
            expectBytes(try c.pread(count: 3, offset: 100), [9, 8, 7], "after the errors")
            // Up to the last byte is fine.
            try c.pwrite([0xEE], offset: size - 1)
            expectBytes(try c.pread(count: 1, offset: size - 1), [0xEE], "last byte")

            let r = try f.client(transport, export: "ro", structured: structured, strict: false)
            e("ro", EPERM, "write on a read-only export") {
                try r.pwrite([UInt8](repeating: 1, count: 4096), offset: 0)
            }
            e("ro", EPERM, "trim on a read-only export") { try r.trim(count: 4096, offset: 0) }
            e("ro", EPERM, "write zeroes on a read-only export") { try r.zero(count: 4096, offset: 0) }
            e("ro", EPERM, "unaligned write on a read-only export") { try r.pwrite([1, 2], offset: 3) }
            expectZeroes(try r.pread(count: 8192, offset: 4096), "read-only export")
            try r.flush()
            try r.cache(count: 4096, offset: 0)
        }
    }

    @Test(
        "unknown commands, unknown flags, PAYLOAD_LEN, oversized reads and block status without a context",
        arguments: Transport.allCases, [true, false])
    func rawErrors(transport: Transport, structured: Bool) throws {
        try withServer(exports: Self.exports) { f in
            let raw = try f.raw(transport)
            try raw.handshake(structured: structured, metaContext: false)
            var cookie: UInt64 = 100
            func expect(
                _ request: NBDRequest, payload: [UInt8]? = nil, _ error: NBDErrno, _ what: String,
                sourceLocation: SourceLocation = #_sourceLocation
            ) throws {
                var r = request
                cookie += 1
                r.cookie = cookie
                let reply = try raw.roundTrip(r, payload: payload)
                #expect(
                    reply.error == error, "\(what): \(reply.error) \(reply.errorMessage)",
                    sourceLocation: sourceLocation)
                #expect(reply.simple == !structured, sourceLocation: sourceLocation)
                if error != .success { #expect(reply.data.isEmpty, sourceLocation: sourceLocation) }
            }
            try expect(
                NBDRequest(type: NBDCommandType(rawValue: 8), cookie: 0, offset: 0, length: 512), .einval,
                "RESIZE (not advertised)")
            try expect(
                NBDRequest(type: NBDCommandType(rawValue: 0x1234), cookie: 0, offset: 0, length: 0), .einval,
                "command 0x1234")
            try expect(
                NBDRequest(flags: NBDCommandFlags(rawValue: 1 << 7), type: .read, cookie: 0, offset: 0, length: 512),
                .einval, "unknown flag bit 7")
            try expect(
                NBDRequest(flags: NBDCommandFlags(rawValue: 1 << 15), type: .flush, cookie: 0, offset: 0, length: 0),
                .einval, "unknown flag bit 15")
            try expect(
                NBDRequest(flags: .requestOne, type: .read, cookie: 0, offset: 0, length: 512), .einval,
                "REQ_ONE on READ")
            // PAYLOAD_LEN without extended headers: the write's payload is skipped.
            try expect(
                NBDRequest(flags: .payloadLength, type: .write, cookie: 0, offset: 0, length: 1000),
                payload: [UInt8](repeating: 0x77, count: 1000), .einval, "WRITE with PAYLOAD_LEN")
            try expect(
                NBDRequest(flags: .payloadLength, type: .read, cookie: 0, offset: 0, length: 512), .einval,
                "READ with PAYLOAD_LEN")
            // A read longer than the maximum payload (32 MiB): EOVERFLOW with structured replies.
            try expect(
                NBDRequest(type: .read, cookie: 0, offset: 0, length: (32 << 20) + 512),
                structured ? .eoverflow : .einval, "read over the maximum payload")
            // Block status needs the base:allocation context.
            try expect(
                NBDRequest(type: .blockStatus, cookie: 0, offset: 0, length: 4096), .einval,
                "BLOCK_STATUS without a context")
            try expect(
                NBDRequest(type: .blockStatus, cookie: 0, offset: UInt64(Self.size) - 512, length: 4096), .einval,
                "BLOCK_STATUS across the end")
            try expect(
                NBDRequest(type: .cache, cookie: 0, offset: UInt64(Self.size), length: 1), .einval,
                "CACHE after the end")
            if !structured {
                try expect(
                    NBDRequest(flags: .dontFragment, type: .read, cookie: 0, offset: 0, length: 512), .einval,
                    "DF without structured replies")
            }
            // Nothing was written by the refused requests; the connection still works.
            try expect(
                NBDRequest(type: .write, cookie: 0, offset: 4096, length: 3), payload: [1, 2, 3], .success, "write")
            cookie += 1
            let back = try raw.roundTrip(NBDRequest(flags: .fua, type: .read, cookie: cookie, offset: 0, length: 4099))
            #expect(back.error == .success)
            var expected = [UInt8](repeating: 0, count: 4099)
            expected[4096...] = [1, 2, 3]
            expectBytes(readData(back, offset: 0, count: 4099), expected, "read after refused requests")
        }
    }

    @Test("zero-length requests", arguments: [true, false])
    func zeroLength(structured: Bool) throws {
        try withServer(exports: Self.exports) { f in
            let raw = try f.raw(.tcp)
            try raw.handshake(structured: structured, metaContext: structured)
            let size = UInt64(Self.size)
            for (i, type) in [NBDCommandType.read, .write, .trim, .writeZeroes, .cache, .flush].enumerated() {
                for offset in [0, 12345, size] {
                    let r = try raw.roundTrip(
                        NBDRequest(type: type, cookie: UInt64(i), offset: offset, length: 0),
                        payload: type == .write ? [] : nil)
                    #expect(r.error == .success, "\(type) of length 0 at \(offset): \(r.error)")
                    #expect(r.data.isEmpty)
                    if structured {
                        #expect(r.chunks.count == 1 && r.chunks.first?.payload == NBDStructuredReplyChunk.Payload.none)
                    }
                }
            }
            if structured {
                let r = try raw.roundTrip(NBDRequest(type: .blockStatus, cookie: 9, offset: 0, length: 0))
                #expect(r.error == .einval, "block status of length 0 (unspecified by the spec; refused here)")
            }
            // Zero-length past the end is still out of range.
            let past = try raw.roundTrip(NBDRequest(type: .read, cookie: 10, offset: size + 1, length: 0))
            #expect(past.error == .einval)
            let ok = try raw.roundTrip(NBDRequest(type: .read, cookie: 11, offset: 0, length: 512))
            #expect(ok.error == .success && readData(ok, offset: 0, count: 512).count == 512)
        }
    }

    @Test(
        "a 40 MiB write is refused with EINVAL and the connection lives on", arguments: Transport.allCases,
        [true, false])
    func oversizedWrite(transport: Transport, structured: Bool) throws {
        try withServer(exports: Self.exports) { f in
            let raw = try f.raw(transport)
            try raw.handshake(structured: structured, metaContext: false)
            // Header, 40 MiB of filler, and the next request, in one stream.
            var b = ByteBuffer()
            raw.encode(NBDRequest(type: .write, cookie: 1, offset: 0, length: 40 << 20), into: &b)
            try raw.send(b)
            let filler = [UInt8](repeating: 0xCC, count: 1 << 20)
            for _ in 0..<40 { try raw.send(filler) }
            var next = ByteBuffer()
            raw.encode(NBDRequest(type: .write, cookie: 2, offset: 0, length: 4), payload: [5, 6, 7, 8], into: &next)
            try raw.send(next)
            let r1 = try raw.readReply()
            #expect(r1.cookie == 1 && r1.error == .einval, "\(r1.cookie): \(r1.error)")
            let r2 = try raw.readReply()
            #expect(r2.cookie == 2 && r2.error == .success)
            let r3 = try raw.roundTrip(NBDRequest(type: .read, cookie: 3, offset: 0, length: 8))
            #expect(r3.error == .success)
            expectBytes(
                readData(r3, offset: 0, count: 8), [5, 6, 7, 8, 0, 0, 0, 0], "nothing of the refused write landed")
            #expect(f.statistics().nbd[.bytesWritten] == 4)
            // Exactly the maximum is accepted.
            let max = 32 << 20
            let data = [UInt8](repeating: 0x3C, count: max)
            let w = try raw.roundTrip(
                NBDRequest(type: .write, cookie: 4, offset: 0, length: UInt32(max)), payload: data)
            #expect(w.error == .success)
        }
    }

    @Test("a client vanishing with requests in flight leaves nothing behind", arguments: Transport.allCases)
    func clientVanishes(transport: Transport) throws {
        try withServer(exports: Self.exports) { f in
            let idlePages = f.dmaPagesInUse()
            for round in 0..<3 {
                let raw = try f.raw(transport)
                try raw.handshake(structured: round != 1)
                var b = ByteBuffer()
                let payload = [UInt8](repeating: UInt8(round), count: 1 << 20)
                for i in 0..<16 {
                    raw.encode(
                        NBDRequest(type: .write, cookie: UInt64(i), offset: UInt64(i) << 20, length: 1 << 20),
                        payload: payload, into: &b)
                    raw.encode(
                        NBDRequest(
                            flags: i % 2 == 0 ? [] : .fua, type: .read, cookie: UInt64(100 + i),
                            offset: UInt64(i) << 20, length: 1 << 20), into: &b)
                    raw.encode(
                        NBDRequest(
                            type: .writeZeroes, cookie: UInt64(200 + i), offset: (UInt64(i) << 20) + 3,
                            length: 1000), into: &b)
                }
                try raw.send(b)
                if round == 2 { _ = try raw.readReply() }
                // Gone without NBD_CMD_DISC (a reset when unread replies are pending).
                var reset = linger(l_onoff: 1, l_linger: 0)
                setsockopt(raw.fd, SOL_SOCKET, SO_LINGER, &reset, socklen_t(MemoryLayout<linger>.size))
            }
            #expect(eventually { f.server.connectionCount == 0 })
            #expect(eventually { f.statistics().nbd[.activeConnections] == 0 })
            #expect(eventually { f.dmaPagesInUse() == idlePages }, "DMA pages \(f.dmaPagesInUse()), idle \(idlePages)")
            let c = try f.client(transport)
            _ = try c.pread(count: 1 << 20, offset: 0)
            try c.pwrite([1], offset: 0)
        }
    }

    @Test("bad request magic closes only that connection", arguments: Transport.allCases)
    func badMagic(transport: Transport) throws {
        try withServer(exports: Self.exports) { f in
            let other = try f.client(transport == .tcp ? .unix : .tcp)
            try other.pwrite([4, 5, 6], offset: 0)
            let raw = try f.raw(transport)
            try raw.handshake()
            var b = ByteBuffer()
            b.writeMultipleIntegers(UInt32(0xDEAD_BEEF), UInt16(0), UInt16(0), UInt64(1), UInt64(0), UInt32(512))
            try raw.send(b)
            #expect(raw.closesWithoutReply())
            // The other connection and new ones still work.
            expectBytes(try other.pread(count: 3, offset: 0), [4, 5, 6], "other connection")
            let again = try f.client(transport)
            expectBytes(try again.pread(count: 3, offset: 0), [4, 5, 6], "new connection")
            #expect(eventually { f.server.connectionCount == 2 })
        }
    }

    @Test("NBD_CMD_DISC: requests in flight are answered, requests after it are not", arguments: Transport.allCases)
    func disconnect(transport: Transport) throws {
        try withServer(exports: Self.exports) { f in
            let raw = try f.raw(transport)
            try raw.handshake()
            // A large write in flight, then DISC, then a request that must be ignored.
            var b = ByteBuffer()
            raw.encode(
                NBDRequest(type: .write, cookie: 1, offset: 0, length: 4 << 20),
                payload: [UInt8](repeating: 0x42, count: 4 << 20), into: &b)
            raw.encode(NBDRequest(type: .disconnect, cookie: 2, offset: 0, length: 0), into: &b)
            raw.encode(
                NBDRequest(type: .write, cookie: 3, offset: 8 << 20, length: 4096),
                payload: [UInt8](repeating: 0x43, count: 4096), into: &b)
            raw.encode(NBDRequest(type: .read, cookie: 4, offset: 0, length: 512), into: &b)
            try raw.send(b)
            let r = try raw.readReply()
            #expect(r.cookie == 1 && r.error == .success)
            #expect(raw.closesWithoutReply(), "no reply after NBD_CMD_DISC, then the connection closes")
            let c = try f.client(.tcp)
            expectBytes(
                try c.pread(count: 4, offset: (4 << 20) - 4), [0x42, 0x42, 0x42, 0x42], "the write before DISC")
            expectZeroes(try c.pread(count: 4096, offset: 8 << 20), "the write after DISC was not executed")
            #expect(f.statistics().nbd[.writes] == 1)
            #expect(
                eventually { f.statistics().nbd[.activeConnections] == 1 }, "the DISC'd connection is no longer counted"
            )
        }
    }

    @Test("NBD_CMD_DISC after a large read: the whole reply arrives before the close", arguments: [true, false])
    func disconnectAfterLargeRead(structured: Bool) throws {
        try withServer(exports: Self.exports) { f in
            let c = try f.client(.tcp)
            let data = randomBytes(24 << 20, seed: 5)
            try c.pwrite(data, offset: 0)
            let raw = try f.raw(.unix)
            try raw.handshake(structured: structured)
            var b = ByteBuffer()
            raw.encode(
                NBDRequest(flags: structured ? .dontFragment : [], type: .read, cookie: 1, offset: 0, length: 24 << 20),
                into: &b)
            raw.encode(NBDRequest(type: .disconnect, cookie: 2, offset: 0, length: 0), into: &b)
            try raw.send(b)
            // Let the server finish the read and try to close while the reply is
            // still far larger than the socket buffers.
            usleep(500_000)
            let r = try raw.readReply()
            #expect(r.error == .success)
            expectBytes(readData(r, offset: 0, count: 24 << 20), data, "read before DISC")
            #expect(raw.waitForClose())
            #expect(eventually { f.statistics().nbd[.activeConnections] == 1 })
        }
    }
}

/// The read data of a raw reply (simple data, or OFFSET_DATA/OFFSET_HOLE chunks
/// placed at their offsets).
func readData(_ r: RawClient.Reply, offset: UInt64, count: Int) -> [UInt8] {
    if r.simple { return r.data }
    var out = [UInt8](repeating: 0xA5, count: count)
    for c in r.chunks {
        switch c.payload {
        case .offsetData(let o, var d):
            let bytes = d.readBytes(length: d.readableBytes) ?? []
            let start = Int(o - offset)
            out.replaceSubrange(start..<(start + bytes.count), with: bytes)
        case .offsetHole(let o, let n):
            let start = Int(o - offset)
            out.replaceSubrange(start..<(start + Int(n)), with: repeatElement(0, count: Int(n)))
        default: break
        }
    }
    return out
}
