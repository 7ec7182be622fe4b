import NBDProtocol
import NIOCore
import TestSupport
import Testing

/// Encode → decode round trips, hand-picked and randomised (seeded).
@Suite("Round trips")
struct RoundTripTests {
    static let requests: [NBDRequest] = [
        NBDRequest(type: .read, cookie: 0, offset: 0, length: 0),
        NBDRequest(flags: .fua, type: .write, cookie: .max, offset: .max, length: .max),
        NBDRequest(type: .disconnect, cookie: 7, offset: 0, length: 0),
        NBDRequest(
            flags: [.noHole, .fastZero], type: .writeZeroes, cookie: 0xdead_beef, offset: 4096, length: 1 << 30),
        NBDRequest(flags: .requestOne, type: .blockStatus, cookie: 1, offset: 512, length: 512),
        NBDRequest(
            flags: NBDCommandFlags(rawValue: 0xffff), type: NBDCommandType(rawValue: 0xffff), cookie: 2, offset: 3,
            length: 4),
    ]

    @Test(arguments: requests)
    func request(_ request: NBDRequest) throws {
        var buffer = ByteBuffer()
        buffer.writeNBDRequest(request)
        #expect(try buffer.readNBDRequest() == request)
        #expect(buffer.readableBytes == 0)
    }

    @Test func randomRequests() throws {
        let seed = TestSeed.fixed(0x5eed)
        var generator = seed.generator()
        for _ in 0..<2000 {
            let request = NBDRequest(
                flags: NBDCommandFlags(rawValue: .random(in: 0 ... .max, using: &generator)),
                type: NBDCommandType(rawValue: .random(in: 0 ... .max, using: &generator)),
                cookie: .random(in: 0 ... .max, using: &generator),
                offset: .random(in: 0 ... .max, using: &generator),
                length: .random(in: 0 ... .max, using: &generator))
            var buffer = ByteBuffer()
            buffer.writeNBDRequest(request)
            #expect(try buffer.readNBDRequest() == request, "\(seed)")
        }
    }

    @Test func incompleteRequestHeaderIsNotConsumed() throws {
        var buffer = ByteBuffer()
        buffer.writeNBDRequest(NBDRequest(type: .read, cookie: 1, offset: 2, length: 3))
        var partial = buffer.getSlice(at: 0, length: 27)!
        #expect(try partial.readNBDRequest() == nil)
        #expect(partial.readableBytes == 27)
    }

    static let chunks: [NBDStructuredReplyChunk] = [
        NBDStructuredReplyChunk(flags: .done, cookie: 1, payload: .none),
        NBDStructuredReplyChunk(
            cookie: 2, payload: .offsetData(offset: 1 << 40, data: ByteBuffer(repeating: 0xab, count: 4096))),
        NBDStructuredReplyChunk(cookie: 3, payload: .offsetData(offset: 0, data: ByteBuffer(string: "x"))),
        NBDStructuredReplyChunk(flags: .done, cookie: 4, payload: .offsetHole(offset: 512, length: .max)),
        NBDStructuredReplyChunk(
            flags: .done, cookie: 5,
            payload: .blockStatus(
                contextID: 9, descriptors: (1...50).map { .init(length: UInt32($0) * 512, flags: UInt32($0 % 4)) })),
        NBDStructuredReplyChunk(flags: .done, cookie: 6, payload: .error(.eshutdown, message: "going away")),
        NBDStructuredReplyChunk(
            flags: .done, cookie: 7, payload: .error(.eio, message: String(repeating: "é", count: 2048))),
        NBDStructuredReplyChunk(cookie: 8, payload: .errorOffset(.eio, message: "", offset: 12345)),
        NBDStructuredReplyChunk(
            cookie: 9, payload: .unknown(NBDReplyType(rawValue: 0x8003), payload: ByteBuffer(string: "future"))),
        NBDStructuredReplyChunk(
            flags: NBDReplyFlags(rawValue: 0x8001), cookie: 10,
            payload: .unknown(NBDReplyType(rawValue: 77), payload: ByteBuffer())),
    ]

    @Test(arguments: chunks)
    func structuredChunk(_ chunk: NBDStructuredReplyChunk) throws {
        var buffer = ByteBuffer()
        buffer.writeNBDStructuredReplyChunk(chunk)
        #expect(buffer.readableBytes == NBDStructuredReplyChunk.headerSize + chunk.payload.length)
        var decoder = NBDReplyDecoder(readLengths: [:])
        #expect(try decoder.decode(buffer: &buffer) == .structured(chunk))
        #expect(buffer.readableBytes == 0)
    }

    @Test func randomReplyStreamsThroughTheDecoderInAnyChunking() throws {
        let seed = TestSeed.fixed(42)
        var generator = seed.generator()
        var readLengths: [UInt64: Int] = [:]
        var expected: [NBDReply] = []
        var stream = ByteBuffer()
        for cookie in UInt64(0)..<300 {
            let reply: NBDReply
            switch Int.random(in: 0..<8, using: &generator) {
            case 0:
                let length = Int.random(in: 1...600, using: &generator)
                readLengths[cookie] = length
                reply = .simple(NBDSimpleReply(cookie: cookie, data: .random(count: length, using: &generator)))
            case 1:
                // A failed read: no data although a length is pending.
                readLengths[cookie] = 100
                reply = .simple(NBDSimpleReply(error: .eio, cookie: cookie))
            case 2:
                reply = .simple(NBDSimpleReply(cookie: cookie))
            case 3:
                let data = ByteBuffer.random(count: .random(in: 1...600, using: &generator), using: &generator)
                reply = .structured(
                    .init(
                        cookie: cookie,
                        payload: .offsetData(offset: .random(in: 0 ... .max, using: &generator), data: data)))
            case 4:
                reply = .structured(
                    .init(
                        flags: .done, cookie: cookie,
                        payload: .offsetHole(
                            offset: .random(in: 0 ... .max, using: &generator),
                            length: .random(in: 1 ... .max, using: &generator))))
            case 5:
                let descriptors = (0..<Int.random(in: 1...20, using: &generator)).map { _ in
                    NBDBlockStatusDescriptor(
                        length: .random(in: 1 ... .max, using: &generator), flags: .random(in: 0...3, using: &generator)
                    )
                }
                reply = .structured(
                    .init(
                        flags: .done, cookie: cookie,
                        payload: .blockStatus(
                            contextID: .random(in: 0 ... .max, using: &generator), descriptors: descriptors)))
            case 6:
                reply = .structured(
                    .init(
                        flags: .done, cookie: cookie,
                        payload: .error(
                            .einval, message: String(repeating: "m", count: .random(in: 0...50, using: &generator)))))
            default:
                reply = .structured(.init(flags: .done, cookie: cookie, payload: .none))
            }
            expected.append(reply)
            switch reply {
            case .simple(let simple): stream.writeNBDSimpleReply(simple)
            case .structured(let chunk): stream.writeNBDStructuredReplyChunk(chunk)
            }
        }

        let lengths = readLengths
        for chunking in Chunking.all {
            let processor = NIOSingleStepByteToMessageProcessor(NBDReplyDecoder(readLengths: lengths))
            var decoded: [NBDReply] = []
            for chunk in chunking.split(stream) {
                try processor.process(buffer: chunk) { decoded.append($0) }
            }
            #expect(decoded == expected, "chunking \(chunking), \(seed)")
            #expect(processor.unprocessedBytes == 0, "chunking \(chunking), \(seed)")
        }
    }

    @Test(arguments: [
        // NONE with a payload
        "668e33ef 0001 0000 0000000000000001 00000001 00",
        // OFFSET_DATA without data
        "668e33ef 0000 0001 0000000000000001 00000008 0000000000000000",
        // OFFSET_HOLE of the wrong length
        "668e33ef 0000 0002 0000000000000001 00000008 0000000000000000",
        // BLOCK_STATUS without a descriptor
        "668e33ef 0000 0005 0000000000000001 00000004 00000001",
        // BLOCK_STATUS with a partial descriptor
        "668e33ef 0000 0005 0000000000000001 00000008 00000001 00000200",
        // ERROR whose message length exceeds the chunk
        "668e33ef 0001 8001 0000000000000001 00000007 00000005 0002 61",
        // ERROR_OFFSET without its offset
        "668e33ef 0001 8002 0000000000000001 00000007 00000005 0001 61",
    ])
    func malformedChunksAreRejected(_ bytes: String) {
        var buffer = hex(bytes)
        var decoder = NBDReplyDecoder(readLengths: [:])
        #expect(throws: NBDProtocolError.self) { try decoder.decode(buffer: &buffer) }
    }

    @Test func badReplyMagic() {
        var buffer = hex("12345678 00000000 0000000000000000")
        var decoder = NBDReplyDecoder(readLengths: [:])
        #expect(throws: NBDProtocolError.badReplyMagic(0x1234_5678)) { try decoder.decode(buffer: &buffer) }
    }

    static let infos: [NBDInfo] = [
        .export(size: .max, flags: [.hasFlags, .readOnly, .canMultiConn]),
        .name(""), .name("名前"), .description("a disk"),
        .blockSize(minimum: 512, preferred: 4096, maximum: 0xffff_ffff),
        .unknown(NBDInfoType(rawValue: 42), payload: ByteBuffer(string: "?")),
    ]

    @Test(arguments: infos)
    func infoThroughOptionReply(_ info: NBDInfo) throws {
        var buffer = ByteBuffer()
        buffer.writeNBDOptionReply(.info(info, to: .info))
        let reply = try #require(try buffer.readNBDOptionReply())
        #expect(reply.option == .info && reply.type == .info)
        #expect(reply.info == info)
        #expect(buffer.readableBytes == 0)
    }

    @Test func optionRepliesThroughTheDecoder() throws {
        let replies: [NBDOptionReply] = [
            .ack(.structuredReply), .server(name: "disk", details: "the disk"),
            .metaContext(NBDMetaContext(id: 7, name: "base:allocation"), to: .setMetaContext),
            .error(.errorTooBig, to: .go, message: "too big"),
            NBDOptionReply(
                option: NBDOption(rawValue: 1000), type: NBDOptionReplyType(rawValue: 1000),
                data: ByteBuffer(string: "x")),
        ]
        var stream = ByteBuffer()
        for reply in replies { stream.writeNBDOptionReply(reply) }
        for chunking in Chunking.all {
            let processor = NIOSingleStepByteToMessageProcessor(NBDOptionReplyDecoder())
            var decoded: [NBDOptionReply] = []
            for chunk in chunking.split(stream) { try processor.process(buffer: chunk) { decoded.append($0) } }
            #expect(decoded == replies, "chunking \(chunking)")
        }
        #expect(replies[1].server?.name == "disk")
        #expect(replies[1].server?.details == "the disk")
        #expect(replies[2].metaContext == NBDMetaContext(id: 7, name: "base:allocation"))
        #expect(replies[3].errorMessage == "too big")
        #expect(replies[0].errorMessage == nil)
    }

    @Test func greetingAndExportNameReply() throws {
        var buffer = ByteBuffer()
        buffer.writeNBDServerGreeting(NBDServerGreeting(flags: .fixedNewstyle))
        #expect(try buffer.readNBDServerGreeting() == NBDServerGreeting(flags: .fixedNewstyle))
        var bad = hex("4e42444d41474943 0000000000000000 0001")
        #expect(throws: NBDProtocolError.badGreeting(initPassword: NBDMagic.initPassword, optionMagic: 0)) {
            try bad.readNBDServerGreeting()
        }
        for noZeroes in [true, false] {
            let reply = NBDExportNameReply(size: 1 << 33, flags: [.hasFlags, .sendTrim])
            var buffer = ByteBuffer()
            buffer.writeNBDExportNameReply(reply, noZeroes: noZeroes)
            var partial = buffer.getSlice(at: 0, length: buffer.readableBytes - 1)!
            #expect(partial.readNBDExportNameReply(noZeroes: noZeroes) == nil)
            #expect(buffer.readNBDExportNameReply(noZeroes: noZeroes) == reply)
            #expect(buffer.readableBytes == 0)
        }
    }
}
