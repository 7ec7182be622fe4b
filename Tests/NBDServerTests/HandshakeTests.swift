import CNBD
import Foundation
import NBDProtocol
import NBDServer
import NIOCore
import TestSupport
import Testing

/// Option haggling, through libnbd and through raw sockets (README, "The data path").
@Suite("NBD server handshake", .timeLimit(.minutes(30)))
struct HandshakeTests {
    static let exports = [
        ExportSpec(name: "", size: 64 << 20, blockSize: 512),
        ExportSpec(name: "disk2", description: "the second disk", size: 32 << 20, blockSize: 4096),
        ExportSpec(name: "ro", size: 16 << 20, readOnly: true),
    ]

    @Test(
        "INFO/GO through libnbd: size, flags, block sizes, structured replies, base:allocation",
        arguments: Transport.allCases)
    func infoThroughLibnbd(transport: Transport) throws {
        try withServer(exports: Self.exports) { f in
            let c = try f.client(transport)
            #expect(try c.size == 64 << 20)
            #expect(try c.isReadOnly == false)
            #expect(try c.canFlush)
            #expect(try c.canFUA)
            #expect(try c.canTrim)
            #expect(try c.canZero)
            #expect(try c.canFastZero)
            #expect(try c.canDF)
            #expect(try c.canMultiConn)
            #expect(try c.canCache)
            #expect(try c.isRotational == false)
            #expect(try c.blockSize(LIBNBD_SIZE_MINIMUM) == 1)
            #expect(try c.blockSize(LIBNBD_SIZE_PREFERRED) == 4096)
            #expect(try c.blockSize(LIBNBD_SIZE_MAXIMUM) == 32 << 20)
            #expect(try c.structuredRepliesNegotiated)
            #expect(try c.canMetaContext("base:allocation"))
            #expect(c.protocol == "newstyle-fixed")

            let d = try f.client(transport, export: "disk2", fullInfo: true)
            #expect(try d.size == 32 << 20)
            #expect(d.exportDescription == "the second disk")
            #expect(d.canonicalExportName == "disk2")
            #expect(try d.blockSize(LIBNBD_SIZE_PREFERRED) == 4096)
            #expect(try d.isReadOnly == false)

            let r = try f.client(transport, export: "ro")
            #expect(try r.size == 16 << 20)
            #expect(try r.isReadOnly)
            // Only what works on a read-only export is advertised.
            #expect(try r.canTrim == false)
            #expect(try r.canZero == false)
            #expect(try r.canFastZero == false)
            #expect(try r.canFUA == false)
            #expect(try r.canFlush)
            #expect(try r.canMultiConn)

            // Without structured replies: no DF, no metadata contexts.
            let s = try f.client(transport, structured: false)
            #expect(try s.structuredRepliesNegotiated == false)
            #expect(try s.canDF == false)
            #expect(try s.canMetaContext("base:allocation") == false)
            #expect(try s.canMultiConn)
            for h in [c, d, r, s] { try h.shutdown() }
        }
    }

    @Test("the second export is reachable by name and keeps its own data")
    func secondExportByName() throws {
        try withServer(exports: Self.exports) { f in
            let a = try f.client(.tcp)
            let b = try f.client(.unix, export: "disk2")
            try a.pwrite([UInt8](repeating: 0x11, count: 4096), offset: 0)
            try b.pwrite([UInt8](repeating: 0x22, count: 4096), offset: 0)
            expectBytes(try a.pread(count: 4096, offset: 0), [UInt8](repeating: 0x11, count: 4096), "export ''")
            expectBytes(try b.pread(count: 4096, offset: 0), [UInt8](repeating: 0x22, count: 4096), "export disk2")
            #expect(f.statistics(export: "disk2").nbd[.writes] == 1)
            #expect(f.statistics(export: "").nbd[.writes] == 1)
        }
    }

    @Test("NBD_OPT_LIST shows every export (libnbd option mode)", arguments: Transport.allCases)
    func listExports(transport: Transport) throws {
        try withServer(exports: Self.exports) { f in
            let c = try f.client(transport, metaContext: false, optMode: true)
            let list = try c.optList()
            #expect(list.map(\.0) == ["", "disk2", "ro"])
            #expect(list.first { $0.0 == "disk2" }?.1 == "the second disk")
            try c.optAbort()
        }
    }

    @Test("an unknown option gets ERR_UNSUP and the session goes on", arguments: Transport.allCases)
    func unknownOption(transport: Transport) throws {
        try withServer { f in
            let raw = try f.raw(transport)
            let greeting = try raw.readGreeting()
            #expect(greeting.flags.contains(.fixedNewstyle))
            try raw.sendClientFlags()
            var data = ByteBuffer()
            data.writeString("some option data")
            try raw.sendOption(NBDOptionRequest(option: NBDOption(rawValue: 0x4242), data: data))
            let reply = try raw.readOptionReply()
            #expect(reply.type == .errorUnsupported)
            #expect(reply.option.rawValue == 0x4242)
            // STARTTLS is refused by policy (--tls off: NOTLS mode).
            try raw.sendOption(.startTLS)
            #expect(try raw.readOptionReply().type == .errorPolicy)
            // The session continues: INFO, then GO, then a request.
            try raw.sendOption(.info(exportName: "", requests: [.blockSize]))
            let info = try raw.readOptionReplies()
            #expect(info.last?.type == .ack)
            #expect(info.contains { if case .blockSize(1, 4096, 32 << 20)? = $0.info { true } else { false } })
            try raw.sendOption(.go(exportName: ""))
            #expect(try raw.readOptionReplies().last?.type == .ack)
            let r = try raw.roundTrip(NBDRequest(type: .read, cookie: 7, offset: 0, length: 512))
            #expect(r.error == .success)
            #expect(r.data.count == 512)
        }
    }

    @Test("GO for an unknown export gets ERR_UNKNOWN; a known name then works", arguments: Transport.allCases)
    func goUnknownExport(transport: Transport) throws {
        try withServer(exports: Self.exports) { f in
            let raw = try f.raw(transport)
            try raw.startOptions()
            try raw.sendOption(.go(exportName: "nope"))
            #expect(try raw.readOptionReply().type == .errorUnknown)
            try raw.sendOption(.info(exportName: "missing"))
            #expect(try raw.readOptionReply().type == .errorUnknown)
            try raw.sendOption(.go(exportName: "disk2", requests: [.name, .description]))
            let replies = try raw.readOptionReplies()
            #expect(replies.last?.type == .ack)
            let infos = replies.compactMap(\.info)
            #expect(infos.contains(.name("disk2")))
            #expect(infos.contains(.description("the second disk")))
            #expect(infos.contains { if case .export(32 << 20, _) = $0 { true } else { false } })
            let r = try raw.roundTrip(NBDRequest(type: .flush, cookie: 1, offset: 0, length: 0))
            #expect(r.error == .success)
        }
    }

    @Test(
        "EXPORT_NAME with an unknown name closes the connection; a known one enters transmission",
        arguments: Transport.allCases)
    func exportNameOption(transport: Transport) throws {
        try withServer(exports: Self.exports) { f in
            let bad = try f.raw(transport)
            try bad.startOptions()
            try bad.sendOption(.exportName("nope"))
            #expect(bad.closesWithoutReply())

            let good = try f.raw(transport)
            try good.startOptions()
            try good.sendOption(.exportName("disk2"))
            let (size, flags) = try good.readExportNameReply()
            #expect(size == 32 << 20)
            #expect(
                flags.contains([
                    .hasFlags, .sendFlush, .sendFUA, .sendTrim, .sendWriteZeroes, .canMultiConn, .sendCache,
                ]))
            #expect(!flags.contains(.sendDF), "DF needs structured replies")
            #expect(!flags.contains(.readOnly))
            let r = try good.roundTrip(NBDRequest(type: .read, cookie: 3, offset: 4096, length: 4096))
            #expect(r.simple && r.error == .success && r.data.count == 4096)
        }
    }

    @Test("malformed handshakes close only their own connection")
    func malformedHandshakes() throws {
        try withServer { f in
            let keeper = try f.client(.tcp)
            try keeper.pwrite([1, 2, 3], offset: 10)

            // Bad option magic.
            let a = try f.raw(.tcp)
            try a.startOptions()
            var b = ByteBuffer()
            b.writeMultipleIntegers(UInt64(0x1234_5678_9ABC_DEF0), UInt32(1), UInt32(0))
            try a.send(b)
            #expect(a.closesWithoutReply())

            // Unknown client flags.
            let c = try f.raw(.unix)
            try c.startOptions(NBDClientFlags(rawValue: 0x80))
            #expect(c.closesWithoutReply())

            // ABORT is acknowledged, then the connection closes.
            let d = try f.raw(.tcp)
            try d.startOptions()
            try d.sendOption(.abort)
            #expect(try d.readOptionReply().type == .ack)
            #expect(d.waitForClose())

            // SET_META_CONTEXT before STRUCTURED_REPLY is invalid, but not fatal.
            let e = try f.raw(.unix)
            try e.startOptions()
            try e.sendOption(.setMetaContext(exportName: "", queries: ["base:allocation"]))
            #expect(try e.readOptionReply().type == .errorInvalid)
            try e.sendOption(.list)
            let list = try e.readOptionReplies()
            #expect(list.compactMap(\.server).map(\.name) == [""])

            expectBytes(try keeper.pread(count: 3, offset: 10), [1, 2, 3], "surviving connection")
            #expect(f.server.connectionCount >= 2)
        }
    }

    @Test("the whole handshake and the first requests in one packet", arguments: Transport.allCases)
    func pipelinedHandshake(transport: Transport) throws {
        try withServer { f in
            let raw = try f.raw(transport)
            var b = ByteBuffer()
            b.writeNBDClientFlags([.fixedNewstyle, .noZeroes])
            b.writeNBDOption(.structuredReply)
            b.writeNBDOption(.listMetaContext(exportName: "", queries: ["base:"]))
            b.writeNBDOption(.setMetaContext(exportName: "", queries: ["base:allocation", "qemu:dirty-bitmap:x"]))
            b.writeNBDOption(.go(exportName: ""))
            raw.encode(NBDRequest(type: .write, cookie: 1, offset: 0, length: 5), payload: [1, 2, 3, 4, 5], into: &b)
            raw.encode(NBDRequest(type: .blockStatus, cookie: 2, offset: 0, length: 1 << 20), into: &b)
            try raw.send(b)
            _ = try raw.readGreeting()
            #expect(try raw.readOptionReplies().last?.type == .ack)
            let listed = try raw.readOptionReplies()
            #expect(listed.compactMap(\.metaContext).map(\.name) == ["base:allocation"])
            let set = try raw.readOptionReplies()
            #expect(set.compactMap(\.metaContext).map(\.name) == ["base:allocation"], "unknown contexts are ignored")
            let contextID = set.compactMap(\.metaContext).first?.id
            #expect(try raw.readOptionReplies().last?.type == .ack)
            // The two requests may be answered in either order.
            var replies: [UInt64: RawClient.Reply] = [:]
            for _ in 0..<2 {
                let r = try raw.readReply()
                replies[r.cookie] = r
            }
            #expect(replies[1]?.error == .success)
            #expect(replies[2]?.error == .success)
            if case .blockStatus(let id, let extents)? = replies[2]?.chunks.first?.payload {
                #expect(id == contextID)
                #expect(!extents.isEmpty && extents.map { Int($0.length) }.reduce(0, +) <= 1 << 20)
            } else {
                Issue.record("no block status chunk: \(String(describing: replies[2]?.chunks))")
            }
        }
    }

    @Test("connections over --max-connections are refused during the handshake")
    func connectionLimit() throws {
        try withServer(configure: { $0.limits.maximumConnections = 1 }) { f in
            let first = try f.client(.tcp)
            let raw = try f.raw(.unix)
            try raw.startOptions()
            try raw.sendOption(.go(exportName: ""))
            #expect(try raw.readOptionReply().type == .errorShutdown)
            try raw.sendOption(.abort)
            #expect(try raw.readOptionReply().type == .ack)
            #expect(raw.waitForClose())
            #expect(throws: LibNBDError.self) { _ = try f.client(.tcp) }
            try first.shutdown()
            // Once the first one is gone, a new connection is served.
            #expect(eventually { f.server.connectionCount == 0 })
            let again = try f.client(.unix)
            #expect(try again.size == 64 << 20)
        }
    }

    @Test("a client that never finishes the handshake is dropped after the timeout")
    func handshakeTimeout() throws {
        try withServer(configure: { $0.limits.handshakeTimeoutSeconds = 1 }) { f in
            let raw = try f.raw(.tcp)
            _ = try raw.readGreeting()
            let start = Date()
            #expect(raw.waitForClose(milliseconds: 5_000))
            #expect(Date().timeIntervalSince(start) < WaitScale.seconds(4))
        }
    }
}
