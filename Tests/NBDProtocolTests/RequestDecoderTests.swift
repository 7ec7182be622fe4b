import NBDProtocol
import NIOCore
import NIOTestUtils
import TestSupport
import Testing

@Suite("NBDRequestDecoder")
struct RequestDecoderTests {
    typealias Message = NBDRequestDecoder.Message

    private static func encode(_ request: NBDRequest, payload: ByteBuffer? = nil) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeNBDRequest(request)
        if let payload { buffer.writeImmutableBuffer(payload) }
        return buffer
    }

    /// Decodes `stream` in the given chunking through a processor. Byte by byte, a
    /// stream of megabytes is seconds of synchronous work: the tests that do it call
    /// this on a thread of their own (`onOwnThread`), keeping the cooperative pool free.
    private static func decodeAll(
        _ stream: ByteBuffer, chunking: Chunking, maximumPayload: Int = NBDRequestDecoder.defaultMaximumPayload
    ) throws -> (messages: [Message], unprocessed: Int) {
        let processor = NIOSingleStepByteToMessageProcessor(NBDRequestDecoder(maximumPayload: maximumPayload))
        var messages: [Message] = []
        for chunk in chunking.split(stream) {
            try processor.process(buffer: chunk) { messages.append($0) }
        }
        return (messages, processor.unprocessedBytes)
    }

    @Test func verifierAcceptsTheDecoder() throws {
        let read = NBDRequest(type: .read, cookie: 1, offset: 4096, length: 512)
        let write = NBDRequest(flags: .fua, type: .write, cookie: 2, offset: 0, length: 10)
        let emptyWrite = NBDRequest(type: .write, cookie: 3, offset: 0, length: 0)
        let oversized = NBDRequest(type: .write, cookie: 4, offset: 0, length: 40)
        let flagged = NBDRequest(flags: .payloadLength, type: .write, cookie: 5, offset: 0, length: 8)
        let flaggedRead = NBDRequest(flags: .payloadLength, type: .read, cookie: 6, offset: 0, length: 8)
        let payload = ByteBuffer(string: "0123456789")
        let pairs: [(ByteBuffer, [Message])] = [
            (Self.encode(read), [.request(read, payload: nil)]),
            (Self.encode(write, payload: payload), [.request(write, payload: payload)]),
            (Self.encode(emptyWrite), [.request(emptyWrite, payload: ByteBuffer())]),
            (Self.encode(oversized, payload: ByteBuffer(repeating: 1, count: 40)), [.oversizedPayload(oversized)]),
            (
                Self.encode(flagged, payload: ByteBuffer(repeating: 2, count: 8)),
                [.unexpectedPayloadLengthFlag(flagged)]
            ),
            (Self.encode(flaggedRead), [.unexpectedPayloadLengthFlag(flaggedRead)]),
            (
                Self.encode(read) + Self.encode(write, payload: payload),
                [.request(read, payload: nil), .request(write, payload: payload)]
            ),
        ]
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: pairs) {
            NBDRequestDecoder(maximumPayload: 32)
        }
    }

    @Test(arguments: Chunking.all)
    func randomStreamIsIndependentOfChunking(_ chunking: Chunking) async throws {
        let seed = TestSeed.fixed(7)
        var generator = seed.generator()
        let types: [NBDCommandType] = [.read, .write, .flush, .trim, .cache, .writeZeroes, .blockStatus, .disconnect]
        var stream = ByteBuffer()
        var expected: [Message] = []
        for cookie in UInt64(0)..<400 {
            let type = types.randomElement(using: &generator)!
            let oversized = type == .write && Bool.random(using: &generator) && Bool.random(using: &generator)
            let length =
                type == .write
                ? UInt32.random(in: 0...(oversized ? 3000 : 1024), using: &generator)
                : UInt32.random(in: 0 ... .max, using: &generator)
            let request = NBDRequest(
                flags: NBDCommandFlags(rawValue: .random(in: 0...31, using: &generator)), type: type, cookie: cookie,
                offset: .random(in: 0 ... .max, using: &generator), length: length)
            stream.writeNBDRequest(request)
            if type == .write {
                let payload = ByteBuffer.random(count: Int(length), using: &generator)
                stream.writeImmutableBuffer(payload)
                expected.append(length > 1024 ? .oversizedPayload(request) : .request(request, payload: payload))
            } else {
                expected.append(.request(request, payload: nil))
            }
        }
        let (messages, unprocessed) = try await onOwnThread { [stream] in
            try Self.decodeAll(stream, chunking: chunking, maximumPayload: 1024)
        }
        #expect(messages == expected, "\(seed)")
        #expect(unprocessed == 0, "\(seed)")
    }

    @Test(arguments: Chunking.all)
    func writePayloadIsAssembledExactly(_ chunking: Chunking) async throws {
        let seed = TestSeed.fixed(99)
        var generator = seed.generator()
        let payload = ByteBuffer.random(count: 70_000, using: &generator)
        let write = NBDRequest(type: .write, cookie: 1, offset: 0, length: 70_000)
        let flush = NBDRequest(type: .flush, cookie: 2, offset: 0, length: 0)
        let stream = Self.encode(write, payload: payload) + Self.encode(flush)
        let chunking = chunking == .byteByByte ? Chunking.random(seed: 5, maximum: 3) : chunking
        let (messages, _) = try await onOwnThread { try Self.decodeAll(stream, chunking: chunking) }
        #expect(messages == [.request(write, payload: payload), .request(flush, payload: nil)], "\(seed)")
    }

    @Test func partialPayloadIsNotDelivered() throws {
        let write = NBDRequest(type: .write, cookie: 1, offset: 0, length: 100)
        var buffer = Self.encode(write, payload: ByteBuffer(repeating: 9, count: 99))
        var decoder = NBDRequestDecoder()
        #expect(try decoder.decode(buffer: &buffer) == nil)
        #expect(buffer.readableBytes == 99, "header consumed, payload left for later")
        buffer.writeInteger(UInt8(9))
        #expect(try decoder.decode(buffer: &buffer) == .request(write, payload: ByteBuffer(repeating: 9, count: 100)))
    }

    @Test func badMagicThrows() throws {
        var buffer = hex("25609514 0000 0000 0000000000000001 0000000000000000 00000000")
        var decoder = NBDRequestDecoder()
        #expect(throws: NBDProtocolError.badRequestMagic(0x2560_9514)) { try decoder.decode(buffer: &buffer) }
        // An extended-header request is a bad magic too: extended headers are never negotiated.
        var extended = hex("21e41c71 0000 0000 0000000000000001 0000000000000000 00000000")
        #expect(throws: NBDProtocolError.badRequestMagic(NBDMagic.extendedRequest)) {
            try decoder.decode(buffer: &extended)
        }
    }

    @Test func badMagicAfterGoodRequestsThrowsOnlyThere() throws {
        let read = NBDRequest(type: .read, cookie: 1, offset: 0, length: 512)
        var stream = Self.encode(read)
        stream.writeInteger(UInt32(0xdead_beef))
        stream.writeRepeatingByte(0, count: 24)
        let processor = NIOSingleStepByteToMessageProcessor(NBDRequestDecoder())
        var messages: [Message] = []
        #expect(throws: NBDProtocolError.badRequestMagic(0xdead_beef)) {
            try processor.process(buffer: stream) { messages.append($0) }
        }
        #expect(messages == [.request(read, payload: nil)])
    }

    /// A WRITE announcing 4 GiB − 1 bytes is reported at once, then its payload is
    /// discarded as it arrives without being buffered, and the next request decodes.
    @Test func oversizedPayloadIsDiscardedWithoutBuffering() throws {
        let huge = NBDRequest(type: .write, cookie: 1, offset: 0, length: .max)
        let next = NBDRequest(type: .read, cookie: 2, offset: 512, length: 512)
        var decoder = NBDRequestDecoder()

        var header = Self.encode(huge)
        #expect(try decoder.decode(buffer: &header) == .oversizedPayload(huge))
        #expect(decoder.bytesToDiscard == Int(UInt32.max))

        // One MiB of filler, fed again and again: the same storage every time.
        let filler = ByteBuffer(repeating: 0x5a, count: 1 << 20)
        var remaining = Int(UInt32.max)
        while remaining > filler.readableBytes {
            var chunk = filler
            #expect(try decoder.decode(buffer: &chunk) == nil)
            #expect(chunk.readableBytes == 0, "every byte of the chunk is discarded")
            remaining -= filler.readableBytes
            #expect(decoder.bytesToDiscard == remaining)
        }
        // The tail of the payload and the next request in one chunk.
        var last = filler.getSlice(at: 0, length: remaining)!
        last.writeNBDRequest(next)
        #expect(try decoder.decode(buffer: &last) == .request(next, payload: nil))
        #expect(decoder.bytesToDiscard == 0)
        #expect(last.readableBytes == 0)
    }

    @Test func maximumPayloadBoundary() throws {
        let atLimit = NBDRequest(type: .write, cookie: 1, offset: 0, length: 64)
        let overLimit = NBDRequest(type: .write, cookie: 2, offset: 0, length: 65)
        let stream =
            Self.encode(atLimit, payload: ByteBuffer(repeating: 1, count: 64))
            + Self.encode(overLimit, payload: ByteBuffer(repeating: 2, count: 65))
        let (messages, _) = try Self.decodeAll(stream, chunking: .whole, maximumPayload: 64)
        #expect(
            messages == [.request(atLimit, payload: ByteBuffer(repeating: 1, count: 64)), .oversizedPayload(overLimit)])
    }

    @Test func nonWriteCommandsNeverCarryPayloadWhateverTheirLength() throws {
        let trim = NBDRequest(type: .trim, cookie: 1, offset: 0, length: .max)
        let read = NBDRequest(type: .read, cookie: 2, offset: 0, length: .max)
        let (messages, unprocessed) = try Self.decodeAll(Self.encode(trim) + Self.encode(read), chunking: .whole)
        #expect(messages == [.request(trim, payload: nil), .request(read, payload: nil)])
        #expect(unprocessed == 0)
    }
}

private func + (lhs: ByteBuffer, rhs: ByteBuffer) -> ByteBuffer {
    var result = lhs
    var rhs = rhs
    result.writeBuffer(&rhs)
    return result
}
