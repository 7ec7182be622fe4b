import NBDProtocol
import NIOCore
import Testing

/// `NBD_OPT_STARTTLS` and the three server modes of proto.md "TLS support",
/// byte for byte, without sockets.
@Suite("NBDServerHandshake TLS")
struct TLSHandshakeTests {
    static func configuration(_ tls: NBDServerHandshake.TLSMode) -> NBDServerHandshake.Configuration {
        var configuration = Fixtures.configuration
        configuration.tls = tls
        return configuration
    }

    /// An option reply with a UTF-8 message, as bytes: magic, option, type, length, message.
    static func errorReply(option: UInt32, type: UInt32, message: String) -> ByteBuffer {
        var bytes = hex("0003e889045565a9")
        bytes.writeMultipleIntegers(option, type, UInt32(message.utf8.count))
        bytes.writeString(message)
        return bytes
    }

    static let startTLSAck = hex("0003e889045565a9 00000005 00000001 00000000")
    static let tlsRequired = "TLS is required: send NBD_OPT_STARTTLS first"

    // MARK: FORCEDTLS (--tls require)

    @Test(arguments: [
        NBDOptionRequest(option: .list, data: ByteBuffer()),
        .info(exportName: "disk", requests: [.name]),
        .go(exportName: "disk"),
        NBDOptionRequest(option: .structuredReply, data: ByteBuffer()),
        .listMetaContext(exportName: "disk", queries: []),
        .setMetaContext(exportName: "disk", queries: ["base:allocation"]),
        NBDOptionRequest(option: .extendedHeaders, data: ByteBuffer()),
        NBDOptionRequest(option: NBDOption(rawValue: 77), data: ByteBuffer(repeating: 3, count: 3000)),
    ])
    func requireAnswersOtherOptionsWithTLSRequired(request: NBDOptionRequest) throws {
        let client = ClientBytes().adding(request).adding(NBDOptionRequest(option: .abort, data: ByteBuffer()))
        let (actions, leftover, handshake) = negotiate(client, configuration: Self.configuration(.required))
        #expect(
            actions == [
                .send(Self.errorReply(option: request.option.rawValue, type: 0x8000_0005, message: Self.tlsRequired)),
                .send(hex("0003e889045565a9 00000002 00000001 00000000")),  // ABORT is still acknowledged
                .close(.clientAborted),
            ])
        #expect(leftover.readableBytes == 0)
        #expect(!handshake.isTLSActive)
    }

    @Test(arguments: Chunking.all)
    func requireExportNameBeforeTLSCloses(_ chunking: Chunking) {
        let client = ClientBytes().adding(.exportName("disk"))
        let (actions, _, handshake) = negotiate(
            client, configuration: Self.configuration(.required), chunking: chunking)
        #expect(actions == [.close(.tlsRequired)])
        #expect(handshake.phase == .closed)
    }

    @Test(arguments: Chunking.all)
    func startTLSIsAcknowledgedAndTheMachineWaitsForTLS(_ chunking: Chunking) {
        // The client's ClientHello may already sit behind the option.
        var client = ClientBytes().adding(NBDOptionRequest(option: .startTLS, data: ByteBuffer()))
        var hello = Self.clientHelloStart
        client.buffer.writeBuffer(&hello)
        var handshake = NBDServerHandshake(configuration: Self.configuration(.required))
        let (actions, leftover) = drive(&handshake, client.buffer, chunking: chunking)
        #expect(actions == [.send(Self.startTLSAck), .startTLS])
        #expect(handshake.phase == .awaitingTLS)
        #expect(leftover == Self.clientHelloStart)
        // Nothing more is consumed until TLS runs.
        var more = leftover
        hello = Self.clientHelloStart
        more.writeBuffer(&hello)
        #expect(handshake.process(&more).isEmpty)
        #expect(more.readableBytes == 2 * Self.clientHelloStart.readableBytes)
    }

    static let clientHelloStart = hex("16 0301 0200 01")

    @Test func afterTLSRequireServesOptionsAndRefusesASecondStartTLS() throws {
        var handshake = NBDServerHandshake(configuration: Self.configuration(.required))
        var bytes = ClientBytes().adding(NBDOptionRequest(option: .startTLS, data: ByteBuffer())).buffer
        #expect(handshake.process(&bytes) == [.send(Self.startTLSAck), .startTLS])
        handshake.tlsStarted()
        #expect(handshake.isTLSActive && handshake.phase == .negotiating)

        var decrypted = ByteBuffer()
        decrypted.writeNBDOption(NBDOptionRequest(option: .startTLS, data: ByteBuffer()))
        decrypted.writeNBDOption(NBDOptionRequest(option: .list, data: ByteBuffer()))
        decrypted.writeNBDOption(.go(exportName: "disk"))
        let actions = handshake.process(&decrypted)
        guard actions.count == 4, case .send(let invalid) = actions[0],
            case .enterTransmission(let selection) = actions[3]
        else {
            throw TestFailure("\(actions)")
        }
        #expect(invalid == Self.errorReply(option: 5, type: 0x8000_0003, message: "TLS is already running"))
        let replies = try sentReplies(Array(actions[1...2]))
        #expect(replies.map(\.type) == [.server, .server, .server, .ack, .info, .info, .ack])
        #expect(selection.export.name == "disk")
    }

    // MARK: SELECTIVETLS (--tls on)

    @Test func onServesPlainClientsWithoutTLS() throws {
        let client = ClientBytes().adding(NBDOptionRequest(option: .list, data: ByteBuffer())).adding(
            .go(exportName: "disk"))
        let (actions, _, handshake) = negotiate(client, configuration: Self.configuration(.optional))
        #expect(try sentReplies(actions).allSatisfy { !$0.type.isError })
        guard case .enterTransmission = actions.last else { throw TestFailure("\(actions)") }
        #expect(!handshake.isTLSActive)
    }

    @Test func stateNegotiatedInPlainTextIsForgottenOnTLS() throws {
        var handshake = NBDServerHandshake(configuration: Self.configuration(.optional))
        var plain = ClientBytes()
            .adding(NBDOptionRequest(option: .structuredReply, data: ByteBuffer()))
            .adding(.setMetaContext(exportName: "disk", queries: ["base:allocation"]))
            .adding(NBDOptionRequest(option: .startTLS, data: ByteBuffer())).buffer
        let before = handshake.process(&plain)
        #expect(before.last == .startTLS)
        #expect(before.dropLast().last == .send(Self.startTLSAck))
        handshake.tlsStarted()

        var decrypted = ByteBuffer()
        decrypted.writeNBDOption(.go(exportName: "disk"))
        guard case .enterTransmission(let selection) = handshake.process(&decrypted).last else {
            throw TestFailure("no GO")
        }
        #expect(!selection.structuredReplies)
        #expect(selection.metaContexts.isEmpty)
        #expect(!selection.transmissionFlags.contains(.sendDF))
    }

    @Test func startTLSWithDataIsInvalidAndTheSessionGoesOn() throws {
        let client = ClientBytes()
            .adding(NBDOptionRequest(option: .startTLS, data: ByteBuffer(string: "junk")))
            .adding(NBDOptionRequest(option: .list, data: ByteBuffer()))
        let (actions, _, handshake) = negotiate(client, configuration: Self.configuration(.optional))
        #expect(
            actions.first
                == .send(Self.errorReply(option: 5, type: 0x8000_0003, message: "NBD_OPT_STARTTLS takes no data")))
        #expect(try sentReplies(actions).last == .ack(.list))
        #expect(handshake.phase == .negotiating && !handshake.isTLSActive)
    }

    // MARK: NOTLS (--tls off)

    @Test(arguments: [0, 4])
    func offRefusesStartTLSWithPolicyAndNeverRequiresTLS(dataLength: Int) throws {
        let client = ClientBytes()
            .adding(NBDOptionRequest(option: .startTLS, data: ByteBuffer(repeating: 1, count: dataLength)))
            .adding(NBDOptionRequest(option: .list, data: ByteBuffer()))
            .adding(.exportName("disk"))
        let (actions, _, handshake) = negotiate(client, configuration: Self.configuration(.off))
        #expect(
            actions.first
                == .send(
                    Self.errorReply(
                        option: 5, type: 0x8000_0002, message: "TLS is not enabled on this server (--tls off)")))
        #expect(
            try sentReplies(Array(actions.dropFirst().dropLast(2))).map(\.type) == [.server, .server, .server, .ack])
        guard case .enterTransmission = actions.last else { throw TestFailure("\(actions)") }
        #expect(handshake.phase == .transmission)
    }

    @Test func shutdownTakesPrecedenceOverTLSRequired() {
        var handshake = NBDServerHandshake(configuration: Self.configuration(.required))
        handshake.beginShutdown()
        var bytes = ClientBytes().adding(NBDOptionRequest(option: .list, data: ByteBuffer())).buffer
        #expect(
            handshake.process(&bytes) == [
                .send(Self.errorReply(option: 3, type: 0x8000_0007, message: "server is shutting down"))
            ])
    }
}
