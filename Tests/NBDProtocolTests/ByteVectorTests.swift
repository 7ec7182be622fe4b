import NBDProtocol
import NIOCore
import Testing

/// Hand-written byte vectors from the layouts in proto.md.
@Suite("Byte vectors")
struct ByteVectorTests {
    static let cookie: UInt64 = 0x0102_0304_0506_0708
    static let cookieHex = "0102030405060708"

    private func encoded(_ body: (inout ByteBuffer) -> Int) -> ByteBuffer {
        var buffer = ByteBuffer()
        let written = body(&buffer)
        #expect(written == buffer.readableBytes, "reported byte count")
        return buffer
    }

    // MARK: Handshake

    @Test func greeting() {
        let both = encoded { $0.writeNBDServerGreeting(NBDServerGreeting(flags: [.fixedNewstyle, .noZeroes])) }
        #expect(both == hex("4e42444d41474943 49484156454f5054 0003"))
        let handshake = NBDServerHandshake(configuration: .init(exports: [], advertisesNoZeroes: false))
        #expect(handshake.greeting == hex("4e42444d41474943 49484156454f5054 0001"))
    }

    @Test func clientFlagsAndOptionHeader() {
        #expect(encoded { $0.writeNBDClientFlags([.fixedNewstyle, .noZeroes]) } == hex("00000003"))
        #expect(
            encoded { $0.writeNBDOption(.abort) } == hex("49484156454f5054 00000002 00000000"))
        #expect(
            encoded { $0.writeNBDOption(.exportName("disk")) }
                == hex("49484156454f5054 00000001 00000004 6469736b"))
    }

    @Test func goAndSetMetaContextOptions() {
        #expect(
            encoded { $0.writeNBDOption(.go(exportName: "disk", requests: [.name, .blockSize])) }
                == hex("49484156454f5054 00000007 0000000e  00000004 6469736b 0002 0001 0003"))
        #expect(
            encoded { $0.writeNBDOption(.setMetaContext(exportName: "disk", queries: ["base:allocation"])) }
                == hex(
                    """
                    49484156454f5054 0000000a 0000001f
                    00000004 6469736b 00000001 0000000f 626173653a616c6c6f636174696f6e
                    """))
    }

    @Test func exportNameReplyWithAndWithoutZeroes() {
        let reply = NBDExportNameReply(size: 0x4000_0000, flags: [.hasFlags, .sendFlush])
        #expect(
            encoded { $0.writeNBDExportNameReply(reply, noZeroes: true) } == hex("0000000040000000 0005"))
        let padded = encoded { $0.writeNBDExportNameReply(reply, noZeroes: false) }
        #expect(padded == hex("0000000040000000 0005" + String(repeating: "00", count: 124)))
        #expect(padded.readableBytes == 134)
    }

    @Test func optionReplies() {
        let magic = "0003e889045565a9"
        #expect(encoded { $0.writeNBDOptionReply(.ack(.go)) } == hex("\(magic) 00000007 00000001 00000000"))
        #expect(
            encoded { $0.writeNBDOptionReply(.error(.errorUnsupported, to: NBDOption(rawValue: 99))) }
                == hex("\(magic) 00000063 80000001 00000000"))
        #expect(
            encoded { $0.writeNBDOptionReply(.error(.errorUnknown, to: .info, message: "no")) }
                == hex("\(magic) 00000006 80000006 00000002 6e6f"))
        #expect(
            encoded { $0.writeNBDOptionReply(.server(name: "disk")) }
                == hex("\(magic) 00000003 00000002 00000008 00000004 6469736b"))
        #expect(
            encoded { $0.writeNBDOptionReply(.server(name: "a", details: "b")) }
                == hex("\(magic) 00000003 00000002 00000006 00000001 61 62"))
        #expect(
            encoded {
                $0.writeNBDOptionReply(
                    .metaContext(NBDMetaContext(id: 1, name: "base:allocation"), to: .setMetaContext))
            } == hex("\(magic) 0000000a 00000004 00000013 00000001 626173653a616c6c6f636174696f6e"))
    }

    @Test(arguments: [
        (NBDInfo.export(size: 0x10_0000, flags: [.hasFlags, .sendFlush]), "0000000c 0000 0000000000100000 0005"),
        (.name("disk"), "00000006 0001 6469736b"),
        (.description("d"), "00000003 0002 64"),
        (.blockSize(minimum: 1, preferred: 4096, maximum: 1 << 25), "0000000e 0003 00000001 00001000 02000000"),
    ])
    func infoReplies(info: NBDInfo, expected: String) {
        let bytes = encoded { $0.writeNBDOptionReply(.info(info, to: .go)) }
        #expect(bytes == hex("0003e889045565a9 00000007 00000003 " + expected))
    }

    // MARK: Transmission

    @Test func requestHeader() {
        let request = NBDRequest(flags: .fua, type: .write, cookie: Self.cookie, offset: 0x1000, length: 0x200)
        let bytes = encoded { $0.writeNBDRequest(request) }
        #expect(bytes == hex("25609513 0001 0001 \(Self.cookieHex) 0000000000001000 00000200"))
        #expect(bytes.readableBytes == NBDRequest.headerSize)
    }

    @Test func simpleReplies() {
        #expect(
            encoded { $0.writeNBDSimpleReply(NBDSimpleReply(cookie: Self.cookie, data: ByteBuffer(string: "abcd"))) }
                == hex("67446698 00000000 \(Self.cookieHex) 61626364"))
        #expect(
            encoded { $0.writeNBDSimpleReply(NBDSimpleReply(error: .eio, cookie: Self.cookie)) }
                == hex("67446698 00000005 \(Self.cookieHex)"))
        #expect(
            encoded { $0.writeNBDSimpleReplyHeader(error: .einval, cookie: Self.cookie) }
                == hex("67446698 00000016 \(Self.cookieHex)"))
    }

    @Test(arguments: [
        (NBDStructuredReplyChunk.Payload.none, NBDReplyFlags.done, "0001 0000 C 00000000"),
        (
            .offsetData(offset: 0x200, data: ByteBuffer(string: "ab")), NBDReplyFlags(),
            "0000 0001 C 0000000a 0000000000000200 6162"
        ),
        (.offsetHole(offset: 0x400, length: 0x1000), .done, "0001 0002 C 0000000c 0000000000000400 00001000"),
        (
            .blockStatus(
                contextID: 1,
                descriptors: [.init(length: 0x1000, state: [.hole, .zero]), .init(length: 0x2000, flags: 0)]),
            .done, "0001 0005 C 00000014 00000001 00001000 00000003 00002000 00000000"
        ),
        (.error(.einval, message: "bad"), .done, "0001 8001 C 00000009 00000016 0003 626164"),
        (.error(.eperm, message: ""), .done, "0001 8001 C 00000006 00000001 0000"),
        (
            .errorOffset(.eio, message: "x", offset: 0x200), NBDReplyFlags(),
            "0000 8002 C 0000000f 00000005 0001 78 0000000000000200"
        ),
    ])
    func structuredChunks(payload: NBDStructuredReplyChunk.Payload, flags: NBDReplyFlags, expected: String) {
        let chunk = NBDStructuredReplyChunk(flags: flags, cookie: Self.cookie, payload: payload)
        let bytes = encoded { $0.writeNBDStructuredReplyChunk(chunk) }
        #expect(bytes == hex("668e33ef " + expected.replacing("C", with: Self.cookieHex)))
    }

    @Test func headerOnlyWritersLetTheCallerAppendData() {
        let data = ByteBuffer(string: "0123456789")
        var split = ByteBuffer()
        split.writeNBDOffsetDataChunkHeader(
            flags: .done, cookie: Self.cookie, offset: 512, dataLength: data.readableBytes)
        #expect(split == hex("668e33ef 0001 0001 \(Self.cookieHex) 00000012 0000000000000200"))
        split.writeImmutableBuffer(data)
        let whole = encoded {
            $0.writeNBDStructuredReplyChunk(
                NBDStructuredReplyChunk(
                    flags: .done, cookie: Self.cookie, payload: .offsetData(offset: 512, data: data)))
        }
        #expect(split == whole)

        var simple = ByteBuffer()
        simple.writeNBDSimpleReplyHeader(cookie: Self.cookie)
        simple.writeImmutableBuffer(data)
        #expect(simple == encoded { $0.writeNBDSimpleReply(NBDSimpleReply(cookie: Self.cookie, data: data)) })
    }
}
