import NBDProtocol
import NIOCore
import Testing

@Suite("NBDServerHandshake streams and limits")
struct HandshakeStreamTests {
    /// A long session touching every option path, ending in GO plus pipelined requests.
    static var script: ClientBytes {
        var client = ClientBytes()
        client.option(.list)
        client.option(NBDOptionRequest(option: .list, data: ByteBuffer(string: "junk")))
        client.option(.info(exportName: "disk", requests: [.name, .description, .blockSize]))
        client.option(.info(exportName: "missing"))
        client.option(NBDOptionRequest(option: .go, data: hex("00000009 6469736b 0000")))
        client.option(NBDOptionRequest(option: NBDOption(rawValue: 77), data: ByteBuffer(repeating: 3, count: 3000)))
        client.option(.startTLS)
        client.option(.extendedHeaders)
        client.option(NBDOptionRequest(option: .info, data: ByteBuffer(repeating: 0, count: 1025)))  // over the limit
        client.option(.setMetaContext(exportName: "disk", queries: ["base:allocation"]))  // before structured replies
        client.option(.structuredReply)
        client.option(.listMetaContext(exportName: "disk", queries: []))
        client.option(.listMetaContext(exportName: "disk", queries: ["base:"]))
        client.option(.setMetaContext(exportName: "disk", queries: ["base:allocation"]))
        client.option(.go(exportName: "strict"))
        client.option(.go(exportName: "disk", requests: [.blockSize]))
        client.buffer.writeNBDRequest(NBDRequest(type: .read, cookie: 1, offset: 0, length: 4096))
        client.buffer.writeNBDRequest(NBDRequest(type: .write, cookie: 2, offset: 0, length: 4))
        client.buffer.writeString("data")
        return client
    }

    @Test func referenceRun() throws {
        let (actions, leftover, handshake) = negotiate(Self.script)
        #expect(handshake.phase == .transmission)
        #expect(leftover.readableBytes == 28 + 28 + 4)
        let types = try sentReplies(actions).map(\.type)
        #expect(
            types == [
                .server, .server, .server, .ack,  // LIST
                .errorInvalid,  // LIST with data
                .info, .info, .info, .info, .ack,  // INFO with NAME and DESCRIPTION
                .errorUnknown, .errorInvalid, .errorUnsupported,
                .errorPolicy,  // STARTTLS with TLS off (NOTLS mode)
                .errorUnsupported, .errorTooBig,
                .errorInvalid,  // SET before STRUCTURED_REPLY
                .ack,  // STRUCTURED_REPLY
                .metaContext, .ack, .metaContext, .ack,  // LIST_META_CONTEXT twice
                .metaContext, .ack,  // SET_META_CONTEXT
                .info, .errorBlockSizeRequired,  // GO strict
                .info, .info, .ack,  // GO disk
            ])
        guard case .enterTransmission(let selection) = actions.last else { throw TestFailure("\(actions)") }
        #expect(selection.metaContexts.map(\.name) == ["base:allocation"])
        #expect(selection.structuredReplies && selection.clientRequestedBlockSize)
    }

    @Test(arguments: Chunking.all + [.random(seed: 11, maximum: 2), .random(seed: 12, maximum: 16)])
    func anyChunkingGivesTheSameActions(_ chunking: Chunking) {
        let reference = negotiate(Self.script)
        let chunked = negotiate(Self.script, chunking: chunking)
        #expect(chunked.actions == reference.actions)
        #expect(chunked.leftover == reference.leftover)
        #expect(chunked.handshake.phase == .transmission)
    }

    @Test func optionAtExactlyTheLimitIsProcessed() throws {
        var configuration = Fixtures.configuration
        configuration.maximumOptionLength = 14  // 4 + "disk" + 2 + 2×2
        let fits = ClientBytes().adding(.info(exportName: "disk", requests: [.name, .blockSize]))
        #expect(try sentReplies(negotiate(fits, configuration: configuration).actions).last?.type == .ack)
        let tooBig = ClientBytes().adding(.info(exportName: "disk", requests: [.name, .blockSize, .description]))
        #expect(try sentReplies(negotiate(tooBig, configuration: configuration).actions).map(\.type) == [.errorTooBig])
    }

    /// Option data over the limit is skipped as it arrives: the reply comes once
    /// the last byte is gone, and nothing accumulates meanwhile.
    @Test func overLimitDataIsSkippedChunkByChunk() throws {
        var handshake = NBDServerHandshake(configuration: Fixtures.configuration)
        var start = ClientBytes().buffer
        start.writeNBDOptionHeader(option: .go, length: 5000)
        #expect(handshake.process(&start).isEmpty)
        #expect(handshake.phase == .skippingOptionData(remaining: 5000))
        var chunk = ByteBuffer(repeating: 0, count: 4999)
        #expect(handshake.process(&chunk).isEmpty)
        #expect(chunk.readableBytes == 0)
        #expect(handshake.phase == .skippingOptionData(remaining: 1))
        var last = ByteBuffer(repeating: 0, count: 1)
        last.writeNBDOption(.list)
        let actions = handshake.process(&last)
        #expect(try sentReplies(actions).map(\.type) == [.errorTooBig, .server, .server, .server, .ack])
        #expect(try sentReplies(actions).first?.option == .go)
    }

    /// A 3 GiB option: a few MiB of filler leave the machine skipping with nothing
    /// buffered; the filler is one 1 MiB buffer fed again and again, so no GiBs are
    /// ever allocated. Once the skip is complete the next option is answered.
    @Test(arguments: [
        (NBDOption.setMetaContext, UInt32(3) << 30, NBDOptionReplyType.errorTooBig),
        (NBDOption(rawValue: 0x1234), UInt32.max, NBDOptionReplyType.errorUnsupported),
        (NBDOption.list, UInt32.max - 1, NBDOptionReplyType.errorInvalid),
    ])
    func hugeOptionIsSkippedWithoutBuffering(option: NBDOption, length: UInt32, reply: NBDOptionReplyType) throws {
        var handshake = NBDServerHandshake(configuration: Fixtures.configuration)
        var start = ClientBytes().buffer
        start.writeNBDOptionHeader(option: option, length: length)
        #expect(handshake.process(&start).isEmpty)

        let filler = ByteBuffer(repeating: 0xee, count: 1 << 20)
        var remaining = Int(length)
        for _ in 0..<4 {
            var chunk = filler
            #expect(handshake.process(&chunk).isEmpty)
            #expect(chunk.readableBytes == 0, "skipped bytes are consumed, not kept")
            remaining -= filler.readableBytes
            #expect(handshake.phase == .skippingOptionData(remaining: remaining))
        }
        // An option header arriving now is just more data to skip.
        var early = ByteBuffer()
        early.writeNBDOption(.abort)
        #expect(handshake.process(&early).isEmpty)
        remaining -= NBDOptionRequest.headerSize

        // Finish the skip (same storage over and over), then the next option.
        while remaining > filler.readableBytes {
            var chunk = filler
            #expect(handshake.process(&chunk).isEmpty)
            remaining -= filler.readableBytes
        }
        #expect(handshake.phase == .skippingOptionData(remaining: remaining))
        var tail = filler.getSlice(at: 0, length: remaining)!
        tail.writeNBDOption(.go(exportName: "ro"))
        let actions = handshake.process(&tail)
        let replies = try sentReplies(actions)
        #expect(replies.first?.type == reply)
        #expect(replies.first?.option == option)
        #expect(replies.dropFirst().map(\.type) == [.info, .info, .ack])
        #expect(handshake.phase == .transmission)
    }

    @Test func exportNameOverTheLimitDoesNotWaitForData() {
        var handshake = NBDServerHandshake(configuration: Fixtures.configuration)
        var bytes = ClientBytes().buffer
        bytes.writeNBDOptionHeader(option: .exportName, length: .max)
        #expect(handshake.process(&bytes) == [.close(.exportNameTooLong(.max))])
    }
}
