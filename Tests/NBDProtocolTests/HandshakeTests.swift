import NBDProtocol
import NIOCore
import Testing

typealias Action = NBDServerHandshake.Action

enum Fixtures {
    static let disk = NBDExport(
        name: "disk", description: "the disk", size: 1 << 30,
        flags: [.sendFlush, .sendFUA, .sendTrim, .sendWriteZeroes, .sendFastZero, .sendDF, .canMultiConn, .sendCache],
        blockSize: try! NBDBlockSizeConstraints(minimum: 512, preferred: 4096, maximum: 1 << 25))
    static let readOnly = NBDExport(name: "ro", size: 40960, flags: [.readOnly, .sendFastZero, .blockStatusPayload])
    static let strict = NBDExport(
        name: "strict", size: 1 << 20,
        blockSize: try! NBDBlockSizeConstraints(minimum: 4096, preferred: 4096, maximum: 1 << 20),
        requiresBlockSizeNegotiation: true)

    static let configuration = NBDServerHandshake.Configuration(
        exports: [disk, readOnly, strict], defaultExportName: "disk", maximumOptionLength: 1024)

    /// `disk`'s flags as advertised before and after structured replies.
    static let diskFlagsSimple: NBDTransmissionFlags = [
        .hasFlags, .sendFlush, .sendFUA, .sendTrim, .sendWriteZeroes, .sendFastZero, .canMultiConn, .sendCache,
    ]
    static let diskFlagsStructured = diskFlagsSimple.union(.sendDF)
}

/// Runs `client` through a fresh handshake after the client flags.
func negotiate(
    _ client: ClientBytes, configuration: NBDServerHandshake.Configuration = Fixtures.configuration,
    chunking: Chunking = .whole
) -> (actions: [Action], leftover: ByteBuffer, handshake: NBDServerHandshake) {
    var handshake = NBDServerHandshake(configuration: configuration)
    let (actions, leftover) = drive(&handshake, client.buffer, chunking: chunking)
    return (actions, leftover, handshake)
}

/// The option replies of every `.send` action, in order.
func sentReplies(_ actions: [Action]) throws -> [NBDOptionReply] {
    try actions.flatMap { action -> [NBDOptionReply] in
        if case .send(let bytes) = action { return try optionReplies(bytes) }
        return []
    }
}

@Suite("NBDServerHandshake")
struct HandshakeTests {
    // MARK: Client flags

    @Test func validClientFlagsStartNegotiation() {
        for flags: NBDClientFlags in [[], .fixedNewstyle, [.fixedNewstyle, .noZeroes], .noZeroes] {
            let (actions, _, handshake) = negotiate(ClientBytes(flags: flags))
            #expect(actions.isEmpty)
            #expect(handshake.phase == .negotiating)
        }
    }

    @Test(arguments: [UInt32(4), 0x8000_0000, 0xffff_ffff, 5])
    func unknownClientFlagsClose(_ raw: UInt32) {
        let (actions, _, handshake) = negotiate(ClientBytes(flags: NBDClientFlags(rawValue: raw)))
        #expect(actions == [.close(.unsupportedClientFlags(NBDClientFlags(rawValue: raw)))])
        #expect(handshake.phase == .closed)
    }

    @Test func noZeroesRequiresItToBeAdvertised() {
        var configuration = Fixtures.configuration
        configuration.advertisesNoZeroes = false
        let (actions, _, _) = negotiate(ClientBytes(flags: [.fixedNewstyle, .noZeroes]), configuration: configuration)
        #expect(actions == [.close(.unsupportedClientFlags([.fixedNewstyle, .noZeroes]))])
    }

    @Test func badOptionMagicCloses() {
        var client = ClientBytes()
        client.buffer.writeInteger(UInt64(0x4948_4156_454F_5055))  // IHAVEOPU
        client.buffer.writeMultipleIntegers(UInt32(7), UInt32(0))
        let (actions, _, handshake) = negotiate(client)
        #expect(actions == [.close(.badOptionMagic(0x4948_4156_454F_5055))])
        #expect(handshake.phase == .closed)
    }

    @Test func nothingIsConsumedAfterClose() {
        var client = ClientBytes(flags: NBDClientFlags(rawValue: 8))
        client.option(.list)
        let (actions, leftover, _) = negotiate(client)
        #expect(actions.count == 1)
        #expect(leftover.readableBytes == NBDOptionRequest.headerSize)
    }

    // MARK: NBD_OPT_EXPORT_NAME

    @Test(arguments: [true, false])
    func exportNameEntersTransmission(noZeroes: Bool) throws {
        let flags: NBDClientFlags = noZeroes ? [.fixedNewstyle, .noZeroes] : [.fixedNewstyle]
        var client = ClientBytes(flags: flags).adding(.exportName("disk"))
        // A pipelined request stays in the buffer for the transmission phase.
        client.buffer.writeNBDRequest(NBDRequest(type: .read, cookie: 1, offset: 0, length: 512))
        let (actions, leftover, handshake) = negotiate(client)
        try #require(actions.count == 2)
        var expected = ByteBuffer()
        expected.writeNBDExportNameReply(
            NBDExportNameReply(size: 1 << 30, flags: Fixtures.diskFlagsSimple), noZeroes: noZeroes)
        #expect(actions[0] == .send(expected))
        #expect(expected.readableBytes == (noZeroes ? 10 : 134))
        #expect(
            actions[1]
                == .enterTransmission(
                    NBDExportSelection(
                        export: Fixtures.disk, transmissionFlags: Fixtures.diskFlagsSimple, enteredBy: .exportName,
                        structuredReplies: false, metaContexts: [], clientFlags: flags, noZeroes: noZeroes,
                        clientRequestedBlockSize: false)))
        #expect(handshake.phase == .transmission)
        #expect(leftover.readableBytes == NBDRequest.headerSize)
    }

    @Test func exportNameDefaultExport() throws {
        let (actions, _, _) = negotiate(ClientBytes().adding(.exportName("")))
        guard case .enterTransmission(let selection) = actions.last else { throw TestFailure("\(actions)") }
        #expect(selection.export == Fixtures.disk)
    }

    @Test func exportNameUnknownCloses() {
        let (actions, _, handshake) = negotiate(ClientBytes().adding(.exportName("nope")))
        #expect(actions == [.close(.unknownExport("nope"))])
        #expect(handshake.phase == .closed)
    }

    @Test func exportNameTooLongClosesAtOnce() {
        var client = ClientBytes()
        client.buffer.writeNBDOptionHeader(option: .exportName, length: 1025)
        let (actions, _, _) = negotiate(client)
        #expect(actions == [.close(.exportNameTooLong(1025))])
    }

    @Test func exportNameNeedingBlockSizeNegotiationCloses() {
        let (actions, _, _) = negotiate(ClientBytes().adding(.exportName("strict")))
        #expect(actions == [.close(.blockSizeNegotiationRequired("strict"))])
    }

    @Test func exportNameFlagsAreSanitised() throws {
        let (actions, _, _) = negotiate(ClientBytes().adding(.exportName("ro")))
        guard case .enterTransmission(let selection) = actions.last else { throw TestFailure("\(actions)") }
        // HAS_FLAGS added; FAST_ZERO without WRITE_ZEROES and BLOCK_STATUS_PAYLOAD removed.
        #expect(selection.transmissionFlags == [.hasFlags, .readOnly])
    }

    // MARK: NBD_OPT_ABORT

    @Test(arguments: [0, 5, 5000])
    func abortAcknowledgesThenCloses(dataLength: Int) throws {
        var client = ClientBytes()
        client.option(NBDOptionRequest(option: .abort, data: ByteBuffer(repeating: 1, count: dataLength)))
        let (actions, leftover, handshake) = negotiate(client)
        try #require(actions.count == 2)
        #expect(try sentReplies(actions) == [.ack(.abort)])
        #expect(actions[1] == .close(.clientAborted))
        #expect(handshake.phase == .closed)
        #expect(leftover.readableBytes == 0)
    }

    // MARK: NBD_OPT_LIST

    @Test func listSendsEveryExportThenAck() throws {
        let (actions, _, handshake) = negotiate(ClientBytes().adding(.list))
        #expect(actions.count == 1, "one write for the whole answer")
        #expect(
            try sentReplies(actions) == [
                .server(name: "disk", details: "the disk"), .server(name: "ro"), .server(name: "strict"), .ack(.list),
            ])
        #expect(handshake.phase == .negotiating)
    }

    @Test func listWithDataIsInvalid() throws {
        let client = ClientBytes().adding(NBDOptionRequest(option: .list, data: ByteBuffer(string: "x"))).adding(.list)
        let replies = try sentReplies(negotiate(client).actions)
        #expect(replies.map(\.type) == [.errorInvalid, .server, .server, .server, .ack])
        #expect(replies[0].option == .list)
    }

    @Test func listingCanBeForbidden() throws {
        var configuration = Fixtures.configuration
        configuration.allowsListing = false
        let replies = try sentReplies(negotiate(ClientBytes().adding(.list), configuration: configuration).actions)
        #expect(replies.map(\.type) == [.errorPolicy])
    }

    // MARK: NBD_OPT_INFO / NBD_OPT_GO

    @Test func infoAlwaysSendsExportAndBlockSize() throws {
        let (actions, _, handshake) = negotiate(ClientBytes().adding(.info(exportName: "disk")))
        #expect(
            try sentReplies(actions) == [
                .info(.export(size: 1 << 30, flags: Fixtures.diskFlagsSimple), to: .info),
                .info(.blockSize(minimum: 512, preferred: 4096, maximum: 1 << 25), to: .info),
                .ack(.info),
            ])
        #expect(handshake.phase == .negotiating)
    }

    @Test func infoSendsNameAndDescriptionWhenAsked() throws {
        let requests: [NBDInfoType] = [.description, .name, NBDInfoType(rawValue: 99), .blockSize]
        let replies = try sentReplies(
            negotiate(ClientBytes().adding(.info(exportName: "", requests: requests))).actions)
        #expect(
            replies.compactMap(\.info) == [
                .export(size: 1 << 30, flags: Fixtures.diskFlagsSimple), .name("disk"), .description("the disk"),
                .blockSize(minimum: 512, preferred: 4096, maximum: 1 << 25),
            ])
        #expect(replies.last == .ack(.info))
        // No description to give: the request is ignored.
        let roReplies = try sentReplies(
            negotiate(ClientBytes().adding(.info(exportName: "ro", requests: [.description]))).actions)
        #expect(roReplies.compactMap(\.info).map(\.type) == [.export, .blockSize])
    }

    @Test(arguments: [NBDOption.info, .go])
    func unknownExportIsErrUnknown(option: NBDOption) throws {
        let request = option == .go ? NBDOptionRequest.go(exportName: "nope") : .info(exportName: "nope")
        let (actions, _, handshake) = negotiate(ClientBytes().adding(request))
        let replies = try sentReplies(actions)
        #expect(replies.map(\.type) == [.errorUnknown])
        #expect(replies[0].option == option)
        #expect(handshake.phase == .negotiating, "the session goes on")
    }

    static let malformedInfoData: [String] = [
        "",  // shorter than 6 bytes
        "00000000 00",
        "00000005 6469736b 0000",  // name length beyond data length − 6
        "00000004 6469736b 0001",  // one request announced, none sent
        "00000004 6469736b 0000 0001",  // trailing request
        "00000004 6469736b 0001 0001 00",  // odd trailing byte
        "ffffffff 6469736b 0000",
    ]

    @Test(arguments: malformedInfoData)
    func malformedInfoIsErrInvalid(_ data: String) throws {
        for option in [NBDOption.info, .go] {
            let client = ClientBytes().adding(NBDOptionRequest(option: option, data: hex(data)))
            let (actions, _, handshake) = negotiate(client)
            #expect(try sentReplies(actions).map(\.type) == [.errorInvalid])
            #expect(handshake.phase == .negotiating)
        }
    }

    @Test func overlongNameInInfoIsErrInvalid() throws {
        var configuration = Fixtures.configuration
        configuration.maximumOptionLength = 8192
        let name = String(repeating: "n", count: 4097)
        let (actions, _, _) = negotiate(ClientBytes().adding(.info(exportName: name)), configuration: configuration)
        #expect(try sentReplies(actions).map(\.type) == [.errorInvalid])
    }

    @Test func goEntersTransmission() throws {
        var client = ClientBytes().adding(.go(exportName: "disk", requests: [.blockSize]))
        client.buffer.writeNBDRequest(NBDRequest(type: .flush, cookie: 9, offset: 0, length: 0))
        let (actions, leftover, handshake) = negotiate(client)
        try #require(actions.count == 2)
        #expect(
            try sentReplies([actions[0]]) == [
                .info(.export(size: 1 << 30, flags: Fixtures.diskFlagsSimple), to: .go),
                .info(.blockSize(minimum: 512, preferred: 4096, maximum: 1 << 25), to: .go),
                .ack(.go),
            ])
        #expect(
            actions[1]
                == .enterTransmission(
                    NBDExportSelection(
                        export: Fixtures.disk, transmissionFlags: Fixtures.diskFlagsSimple, enteredBy: .go,
                        structuredReplies: false, metaContexts: [], clientFlags: [.fixedNewstyle, .noZeroes],
                        noZeroes: true, clientRequestedBlockSize: true)))
        #expect(handshake.phase == .transmission)
        #expect(leftover.readableBytes == NBDRequest.headerSize, "no zero padding was consumed or owed")
    }

    @Test func goAfterFailedGoStillWorks() throws {
        let client = ClientBytes().adding(.go(exportName: "nope")).adding(.go(exportName: "ro"))
        let (actions, _, _) = negotiate(client)
        #expect(try sentReplies(actions).map(\.type) == [.errorUnknown, .info, .info, .ack])
        guard case .enterTransmission(let selection) = actions.last else { throw TestFailure("\(actions)") }
        #expect(selection.export.name == "ro")
        #expect(!selection.clientRequestedBlockSize)
    }

    @Test func goRequiringBlockSizeNegotiation() throws {
        let (refused, _, handshake) = negotiate(ClientBytes().adding(.go(exportName: "strict")))
        #expect(
            try sentReplies(refused) == [
                .info(.blockSize(minimum: 4096, preferred: 4096, maximum: 1 << 20), to: .go),
                .error(.errorBlockSizeRequired, to: .go, message: "export requires NBD_INFO_BLOCK_SIZE"),
            ])
        #expect(handshake.phase == .negotiating)

        // INFO without the request is fine; GO with it succeeds.
        let client = ClientBytes().adding(.info(exportName: "strict")).adding(
            .go(exportName: "strict", requests: [.blockSize]))
        let (actions, _, _) = negotiate(client)
        #expect(try sentReplies(actions).map(\.type) == [.info, .info, .ack, .info, .info, .ack])
        guard case .enterTransmission(let selection) = actions.last else { throw TestFailure("\(actions)") }
        #expect(selection.clientRequestedBlockSize)
    }

    // MARK: NBD_OPT_STRUCTURED_REPLY

    @Test func structuredReplyAckAndSendDF() throws {
        let client = ClientBytes().adding(.structuredReply).adding(.go(exportName: "disk"))
        let (actions, _, _) = negotiate(client)
        let replies = try sentReplies(actions)
        #expect(replies.first == .ack(.structuredReply))
        #expect(replies[1].info == .export(size: 1 << 30, flags: Fixtures.diskFlagsStructured))
        guard case .enterTransmission(let selection) = actions.last else { throw TestFailure("\(actions)") }
        #expect(selection.structuredReplies)
        #expect(selection.transmissionFlags.contains(.sendDF))
    }

    @Test func structuredReplyWithDataIsInvalid() throws {
        let client = ClientBytes().adding(NBDOptionRequest(option: .structuredReply, data: ByteBuffer(string: "zz")))
            .adding(.go(exportName: "disk"))
        let (actions, _, _) = negotiate(client)
        #expect(try sentReplies(actions).first?.type == .errorInvalid)
        guard case .enterTransmission(let selection) = actions.last else { throw TestFailure("\(actions)") }
        #expect(!selection.structuredReplies)
        #expect(!selection.transmissionFlags.contains(.sendDF))
    }

    // MARK: Unsupported options

    @Test(arguments: [
        NBDOption.extendedHeaders, .peekExport, NBDOption(rawValue: 0), NBDOption(rawValue: 12),
        NBDOption(rawValue: 0xdead_beef),
    ])
    func unsupportedOptionsAreErrUnsupAndTheSessionGoesOn(option: NBDOption) throws {
        for dataLength in [0, 3, 5000] {
            let client = ClientBytes()
                .adding(NBDOptionRequest(option: option, data: ByteBuffer(repeating: 7, count: dataLength)))
                .adding(.list)
            let replies = try sentReplies(negotiate(client).actions)
            #expect(replies.first?.type == .errorUnsupported)
            #expect(replies.first?.option == option)
            #expect(replies.last == .ack(.list))
        }
    }

    // MARK: Shutdown

    @Test func shutdownErrorsOptionsButAbort() throws {
        var handshake = NBDServerHandshake(configuration: Fixtures.configuration)
        handshake.beginShutdown()
        let client = ClientBytes().adding(.go(exportName: "disk")).adding(.list).adding(.abort)
        let (actions, _) = drive(&handshake, client.buffer)
        #expect(try sentReplies(actions).map(\.type) == [.errorShutdown, .errorShutdown, .ack])
        #expect(actions.last == .close(.clientAborted))

        var other = NBDServerHandshake(configuration: Fixtures.configuration)
        other.beginShutdown()
        #expect(drive(&other, ClientBytes().adding(.exportName("disk")).buffer).actions == [.close(.shuttingDown)])
    }
}
