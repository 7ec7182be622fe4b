import NBDProtocol
import NIOCore
import Testing

@Suite("NBDServerHandshake meta contexts")
struct MetaContextTests {
    static let allocation = NBDAllocationState.contextName

    private func listed(_ queries: [String], export: String = "disk", structured: Bool = true) throws
        -> [NBDOptionReply]
    {
        var client = ClientBytes()
        if structured { client.option(.structuredReply) }
        client.option(.listMetaContext(exportName: export, queries: queries))
        return try sentReplies(negotiate(client).actions).filter { $0.option == .listMetaContext }
    }

    @Test(arguments: [
        ([], true), (["base:"], true), (["base:allocation"], true), (["base:allocation", "base:"], true),
        (["base:other"], false), (["qemu:dirty-bitmap:x"], false), (["nocolon"], false), (["x-foo:"], false),
        (["base"], false),
    ])
    func listMetaContext(queries: [String], matches: Bool) throws {
        let replies = try self.listed(queries)
        let expected: [NBDOptionReply] =
            (matches ? [.metaContext(NBDMetaContext(id: 0, name: Self.allocation), to: .listMetaContext)] : [])
            + [.ack(.listMetaContext)]
        #expect(replies == expected)
    }

    @Test func listWorksWithoutStructuredReplies() throws {
        #expect(try self.listed([], structured: false).map(\.type) == [.metaContext, .ack])
    }

    @Test func listForUnknownExportIsErrUnknown() throws {
        #expect(try self.listed([], export: "nope").map(\.type) == [.errorUnknown])
    }

    @Test func nothingOfferedListsNothing() throws {
        var configuration = Fixtures.configuration
        configuration.offersBaseAllocation = false
        let client = ClientBytes().adding(.structuredReply).adding(.listMetaContext(exportName: "disk", queries: []))
            .adding(.setMetaContext(exportName: "disk", queries: [Self.allocation])).adding(.go(exportName: "disk"))
        let (actions, _, _) = negotiate(client, configuration: configuration)
        #expect(try sentReplies(actions).map(\.type) == [.ack, .ack, .ack, .info, .info, .ack])
        guard case .enterTransmission(let selection) = actions.last else { throw TestFailure("\(actions)") }
        #expect(selection.metaContexts.isEmpty)
    }

    static let malformed: [String] = [
        "",
        "00000004 6469736b",  // no query count
        "00000004 6469736b 00000001",  // a query announced, none sent
        "00000004 6469736b 00000001 00000010 626173653a616c6c6f636174696f6e",  // query length beyond data
        "00000004 6469736b 00000000 00",  // trailing byte
        "00000005 6469736b 00000000",  // name length beyond data
        "00000004 6469736b 7fffffff 00000000",  // absurd query count
        "00000004 6469736b 00000001 00001001" + String(repeating: "61", count: 4097),  // query over 4096 bytes
    ]

    @Test(arguments: malformed)
    func malformedQueriesAreErrInvalid(_ data: String) throws {
        var configuration = Fixtures.configuration
        configuration.maximumOptionLength = 8192
        for option in [NBDOption.listMetaContext, .setMetaContext] {
            let client = ClientBytes().adding(.structuredReply).adding(
                NBDOptionRequest(option: option, data: hex(data)))
            let replies = try sentReplies(negotiate(client, configuration: configuration).actions)
            #expect(replies.map(\.type) == [.ack, .errorInvalid])
        }
    }

    @Test func setRequiresStructuredReplies() throws {
        let client = ClientBytes().adding(.setMetaContext(exportName: "disk", queries: [Self.allocation]))
            .adding(.go(exportName: "disk"))
        let (actions, _, _) = negotiate(client)
        let replies = try sentReplies(actions)
        #expect(replies.first?.type == .errorInvalid)
        #expect(replies.first?.option == .setMetaContext)
        guard case .enterTransmission(let selection) = actions.last else { throw TestFailure("\(actions)") }
        #expect(selection.metaContexts.isEmpty)
    }

    @Test func setSelectsBaseAllocationWithAnId() throws {
        let client = ClientBytes().adding(.structuredReply)
            .adding(.setMetaContext(exportName: "disk", queries: ["base:", "x-y:z", Self.allocation, Self.allocation]))
            .adding(.go(exportName: "disk"))
        let (actions, _, _) = negotiate(client)
        let replies = try sentReplies(actions).filter { $0.option == .setMetaContext }
        try #require(replies.count == 2)
        let context = try #require(replies[0].metaContext)
        #expect(context.name == Self.allocation)
        #expect(replies[1] == .ack(.setMetaContext))
        guard case .enterTransmission(let selection) = actions.last else { throw TestFailure("\(actions)") }
        #expect(selection.metaContexts == [context])
        #expect(selection.structuredReplies)
    }

    @Test(arguments: [[], ["base:"], ["base:nothing"]])
    func setWithoutMatchesSelectsNothing(queries: [String]) throws {
        let client = ClientBytes().adding(.structuredReply)
            .adding(.setMetaContext(exportName: "disk", queries: queries)).adding(.go(exportName: "disk"))
        let (actions, _, _) = negotiate(client)
        #expect(try sentReplies(actions).filter { $0.option == .setMetaContext } == [.ack(.setMetaContext)])
        guard case .enterTransmission(let selection) = actions.last else { throw TestFailure("\(actions)") }
        #expect(selection.metaContexts.isEmpty)
    }

    @Test func selectionAppliesOnlyToTheSameExport() throws {
        let client = ClientBytes().adding(.structuredReply)
            .adding(.setMetaContext(exportName: "ro", queries: [Self.allocation])).adding(.go(exportName: "disk"))
        let (actions, _, _) = negotiate(client)
        guard case .enterTransmission(let selection) = actions.last else { throw TestFailure("\(actions)") }
        #expect(selection.metaContexts.isEmpty)

        // The default export resolves to its canonical name.
        let viaDefault = ClientBytes().adding(.structuredReply)
            .adding(.setMetaContext(exportName: "", queries: [Self.allocation])).adding(.exportName("disk"))
        guard case .enterTransmission(let other) = negotiate(viaDefault).actions.last else { throw TestFailure("") }
        #expect(other.metaContexts.map(\.name) == [Self.allocation])
    }

    @Test func aFailingSetClearsThePreviousSelection() throws {
        for failing in [
            NBDOptionRequest.setMetaContext(exportName: "nope", queries: [Self.allocation]),
            NBDOptionRequest(option: .setMetaContext, data: hex("00")),
            NBDOptionRequest(option: .setMetaContext, data: ByteBuffer(repeating: 0, count: 2000)),  // too big
        ] {
            let client = ClientBytes().adding(.structuredReply)
                .adding(.setMetaContext(exportName: "disk", queries: [Self.allocation])).adding(failing)
                .adding(.go(exportName: "disk"))
            let (actions, _, _) = negotiate(client)
            #expect(try sentReplies(actions).filter { $0.option == .setMetaContext }.last?.type.isError == true)
            guard case .enterTransmission(let selection) = actions.last else { throw TestFailure("\(actions)") }
            #expect(selection.metaContexts.isEmpty)
        }
    }
}
