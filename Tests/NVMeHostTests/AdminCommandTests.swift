import ConcurrencyHelpers
import DMA
import NVMe
import NVMeController
import NVMeHost
import Testing

/// Bring-up and every admin command, including their error statuses.
@Suite(.timeLimit(.minutes(30))) struct AdminCommandTests {
    @Test func bringUpIdentifiesControllerAndNamespaces() throws {
        var c = Rig.Config()
        c.namespaces = 2
        c.queuePairs = 3
        c.blockSize = 4096
        let rig = try Rig(c)
        defer { rig.close() }
        let id = rig.driver.identify
        #expect(id[.mdts] == 7)
        #expect(id.supportsDoorbellBufferConfig)
        #expect(id[.nn] == 2)
        #expect(id.version == .v1_3)
        #expect(rig.driver.namespaces.map(\.id) == [1, 2])
        #expect(rig.driver.namespaces[0].blockSize == 4096)
        #expect(rig.driver.namespaces[0].blockCount == (64 << 20) / 4096)
        #expect(rig.driver.namespaces[0].deallocatedReadsZeroes)
        #expect(rig.driver.queuePairs.count == 3)
        #expect(rig.driver.shadowDoorbellsEnabled)
        let csts = ControllerStatus(raw: rig.controller.read32(bar0: RegisterOffset.csts))
        #expect(csts.ready && !csts.fatal)
        let cc = ControllerConfiguration(raw: rig.controller.read32(bar0: RegisterOffset.cc))
        #expect(cc.enable && cc.ioSubmissionQueueEntrySize == 6 && cc.ioCompletionQueueEntrySize == 4)
    }

    @Test func withoutOACSBit8TheDriverStaysOnMMIO() throws {
        var c = Rig.Config()
        c.controller.doorbellBufferConfig = false
        let rig = try Rig(c)
        defer { rig.close() }
        #expect(!rig.driver.identify.supportsDoorbellBufferConfig)
        #expect(!rig.driver.shadowDoorbellsEnabled)
        #expect(
            adminStatus(
                rig, SubmissionQueueEntry(opcode: 0x7C, prp1: HostMemory.busBase, prp2: HostMemory.busBase + 4096))
                == .invalidCommandOpcode)
    }

    @Test func identifyVariantsAndErrors() throws {
        let rig = try Rig()
        defer { rig.close() }
        let buf = try #require(DMABuffer(memory: rig.memory, byteCount: 4096))
        let data = QueuePair.DataPages(buffer: buf, first: 0, count: 1)
        try rig.driver.adminCommand(SubmissionQueueEntry(opcode: 0x06, cdw10: 2), data: data)
        #expect(Array(buf.bytes()[0..<8]) == [1, 0, 0, 0, 0, 0, 0, 0])
        try rig.driver.adminCommand(SubmissionQueueEntry(opcode: 0x06, namespaceIdentifier: 1, cdw10: 2), data: data)
        #expect(buf.bytes()[0..<4] == [0, 0, 0, 0])  // no NSID above 1
        try rig.driver.adminCommand(SubmissionQueueEntry(opcode: 0x06, namespaceIdentifier: 1, cdw10: 0), data: data)
        #expect(IdentifyNamespace(decoding: buf.bytes())[.nsze] == (64 << 20) / 512)
        #expect(
            adminStatus(rig, SubmissionQueueEntry(opcode: 0x06, namespaceIdentifier: 9, cdw10: 0), data: data)
                == .invalidNamespaceOrFormat)
        #expect(adminStatus(rig, SubmissionQueueEntry(opcode: 0x06, cdw10: 0x55), data: data) == .invalidField)
        // A data pointer outside host memory is a Data Transfer Error, not a crash.
        #expect(adminStatus(rig, SubmissionQueueEntry(opcode: 0x06, prp1: 0x1000, cdw10: 1)) == .dataTransferError)
        #expect(
            adminStatus(rig, SubmissionQueueEntry(opcode: 0x06, prp1: HostMemory.busBase + 2, cdw10: 1))
                == .invalidPRPOffset)
    }

    @Test func featuresAndTheirErrors() throws {
        let rig = try Rig()
        defer { rig.close() }
        let nq = try rig.driver.adminCommand(SubmissionQueueEntry(opcode: 0x0A, cdw10: 7))
        #expect(nq.dw0 == 0)  // 1 SQ and 1 CQ granted, 0-based
        // Number of Queues after queues exist: Command Sequence Error.
        #expect(
            adminStatus(rig, SubmissionQueueEntry(opcode: 0x09, cdw10: 7, cdw11: 0x0003_0003)) == .commandSequenceError)
        #expect(
            adminStatus(rig, SubmissionQueueEntry(opcode: 0x09, cdw10: 7 | 1 << 31, cdw11: 0))
                == .featureIdentifierNotSaveable)
        #expect(adminStatus(rig, SubmissionQueueEntry(opcode: 0x09, cdw10: 0x7F)) == .invalidField)
        #expect(adminStatus(rig, SubmissionQueueEntry(opcode: 0x0A, cdw10: 0x7F)) == .invalidField)
        try rig.driver.adminCommand(SubmissionQueueEntry(opcode: 0x09, cdw10: 0x0B, cdw11: 0x1F))
        #expect(try rig.driver.adminCommand(SubmissionQueueEntry(opcode: 0x0A, cdw10: 0x0B)).dw0 == 0x1F)
        // The memory backend has no volatile cache: VWC cannot be set.
        #expect(adminStatus(rig, SubmissionQueueEntry(opcode: 0x09, cdw10: 0x06, cdw11: 1)) == .invalidField)
    }

    /// The features Set Features only records: each keeps its CDW11 bits, Get
    /// Features returns them (select 00b) or the default (01b, 02b), and a reset
    /// restores the defaults.
    @Test func storedFeaturesKeepTheirBitsAndDefaults() throws {
        let rig = try Rig()
        defer { rig.close() }
        func get(_ fid: UInt32, select: UInt32 = 0) throws -> UInt32 {
            try rig.driver.adminCommand(SubmissionQueueEntry(opcode: 0x0A, cdw10: fid | select << 8)).dw0
        }
        #expect(try get(0x04) == 0x0157)
        try rig.driver.adminCommand(SubmissionQueueEntry(opcode: 0x09, cdw10: 0x04, cdw11: 0xABCD_0160))
        try rig.driver.adminCommand(SubmissionQueueEntry(opcode: 0x09, cdw10: 0x08, cdw11: 0x1234_0A0B))
        try rig.driver.adminCommand(SubmissionQueueEntry(opcode: 0x09, cdw10: 0x01, cdw11: 0x8765_4321))
        #expect(try get(0x04) == 0x0160)
        #expect(try get(0x08) == 0x0A0B)
        #expect(try get(0x01) == 0x8765_4321)
        #expect(try get(0x04, select: 1) == 0x0157)
        #expect(try get(0x01, select: 2) == 0)
        #expect(adminStatus(rig, SubmissionQueueEntry(opcode: 0x09, cdw10: 0x09, cdw11: 0)) == .invalidField)
        _ = try rig.driver.reset()
        #expect(try get(0x04) == 0x0157)
        #expect(try get(0x01) == 0)
    }

    @Test func queueCreationAndDeletionErrors() async throws {
        var config = Rig.Config()
        config.queuePairs = 2
        let rig = try Rig(config)
        defer { rig.close() }
        let page = try #require(rig.memory.allocateContiguous(bytes: 64 * 64))
        // Take the driver's second pair down so its ids can be reused.
        #expect(adminStatus(rig, SubmissionQueueEntry(opcode: 0x04, cdw10: 2)) == .invalidQueueDeletion)  // SQ 2 attached
        #expect(adminStatus(rig, SubmissionQueueEntry(opcode: 0x00, cdw10: 2)) == .success)
        #expect(adminStatus(rig, SubmissionQueueEntry(opcode: 0x04, cdw10: 2)) == .success)
        func createCQ(qid: UInt32, size0: UInt32, prp: UInt64 = 0, flags: UInt32 = 0b11, vector: UInt32 = 2)
            -> NVMeStatus?
        {
            adminStatus(
                rig,
                SubmissionQueueEntry(
                    opcode: 0x05, prp1: prp == 0 ? page : prp, cdw10: size0 << 16 | qid,
                    cdw11: vector << 16 | flags))
        }
        func createSQ(qid: UInt32, size0: UInt32, cqid: UInt32, flags: UInt32 = 1, prp: UInt64 = 0) -> NVMeStatus? {
            adminStatus(
                rig,
                SubmissionQueueEntry(
                    opcode: 0x01, prp1: prp == 0 ? page : prp, cdw10: size0 << 16 | qid,
                    cdw11: cqid << 16 | flags))
        }
        #expect(createCQ(qid: 0, size0: 7) == .invalidQueueIdentifier)
        #expect(createCQ(qid: 1, size0: 7) == .invalidQueueIdentifier)  // exists
        #expect(createCQ(qid: 2, size0: 0) == .invalidQueueSize)
        #expect(createCQ(qid: 2, size0: 4096) == .invalidQueueSize)  // MQES is 4095
        #expect(createCQ(qid: 2, size0: 7, prp: page + 512) == .invalidPRPOffset)
        #expect(createCQ(qid: 2, size0: 7, vector: 9999) == .invalidInterruptVector)
        #expect(createCQ(qid: 2, size0: 7, flags: 0b10) == .invalidField)  // not physically contiguous
        #expect(createCQ(qid: 2, size0: 7) == .success)
        #expect(createCQ(qid: 3, size0: 7) == .invalidQueueIdentifier)  // beyond the 2 granted
        #expect(createSQ(qid: 2, size0: 7, cqid: 0) == .completionQueueInvalid)
        #expect(createSQ(qid: 2, size0: 7, cqid: 9) == .completionQueueInvalid)
        #expect(createSQ(qid: 1, size0: 7, cqid: 2) == .invalidQueueIdentifier)  // exists
        #expect(createSQ(qid: 2, size0: 0, cqid: 2) == .invalidQueueSize)
        #expect(createSQ(qid: 2, size0: 7, cqid: 2, flags: 0) == .invalidField)
        #expect(createSQ(qid: 2, size0: 7, cqid: 2, prp: page + 8) == .invalidPRPOffset)
        #expect(createSQ(qid: 2, size0: 7, cqid: 2) == .success)
        #expect(adminStatus(rig, SubmissionQueueEntry(opcode: 0x04, cdw10: 2)) == .invalidQueueDeletion)  // SQ 2 attached
        #expect(adminStatus(rig, SubmissionQueueEntry(opcode: 0x00, cdw10: 5)) == .invalidQueueIdentifier)
        #expect(adminStatus(rig, SubmissionQueueEntry(opcode: 0x00, cdw10: 0)) == .invalidQueueIdentifier)
        #expect(adminStatus(rig, SubmissionQueueEntry(opcode: 0x00, cdw10: 2)) == .success)
        #expect(adminStatus(rig, SubmissionQueueEntry(opcode: 0x04, cdw10: 2)) == .success)
        #expect(adminStatus(rig, SubmissionQueueEntry(opcode: 0x04, cdw10: 2)) == .invalidQueueIdentifier)
        // The driver's own queue still works.
        try await rig.qp.flush()
    }

    @Test func doorbellBufferConfigErrors() throws {
        let rig = try Rig()
        defer { rig.close() }
        let b = HostMemory.busBase
        #expect(adminStatus(rig, SubmissionQueueEntry(opcode: 0x7C, prp1: b + 8, prp2: b + 8192)) == .invalidField)
        #expect(adminStatus(rig, SubmissionQueueEntry(opcode: 0x7C, prp1: b + 4096, prp2: b + 4096)) == .invalidField)
        #expect(adminStatus(rig, SubmissionQueueEntry(opcode: 0x7C, prp1: 0, prp2: b)) == .invalidField)
        #expect(adminStatus(rig, SubmissionQueueEntry(opcode: 0x7C, prp1: 0x4000, prp2: b)) == .invalidField)
    }

    @Test func abortAsyncEventsLogPagesAndUnknownOpcodes() async throws {
        let rig = try Rig()
        defer { rig.close() }
        let abort = try rig.driver.adminCommand(SubmissionQueueEntry(opcode: 0x08, cdw10: 1 | 5 << 16))
        #expect(abort.dw0 & 1 == 1)  // not aborted: nothing outstanding
        #expect(adminStatus(rig, SubmissionQueueEntry(opcode: 0xC3)) == .invalidCommandOpcode)
        #expect(adminStatus(rig, SubmissionQueueEntry(opcode: 0x18)) == .invalidCommandOpcode)
        #expect(adminStatus(rig, SubmissionQueueEntry(opcode: 0x06, flags: 0x40, cdw10: 1)) == .invalidField)  // SGL requested

        let buf = try #require(DMABuffer(memory: rig.memory, byteCount: 4096))
        let data = QueuePair.DataPages(buffer: buf, first: 0, count: 1)
        try await rig.qp.write(lba: 0, [UInt8](repeating: 1, count: 4096))
        try rig.driver.adminCommand(SubmissionQueueEntry(opcode: 0x02, cdw10: 0x02 | 127 << 16), data: data)
        let smart = buf.bytes()
        #expect(smart[3] == 100)  // available spare
        #expect(smart[48] == 1)  // one data unit written
        #expect(
            adminStatus(rig, SubmissionQueueEntry(opcode: 0x02, cdw10: 0x7F | 127 << 16), data: data) == .invalidLogPage
        )
        // A length beyond MDTS: NUMD = 2^32 - 1 (16 GiB) is Invalid Field. It used to
        // allocate the whole buffer before the check (fuzz-controller OOM; its input is
        // Fuzz/Corpus/controller/regression-get-log-page-numd-oom, which scripts/fuzz
        // replays under -rss_limit_mb).
        #expect(
            adminStatus(
                rig, SubmissionQueueEntry(opcode: 0x02, cdw10: 0x02 | 0xFFFF << 16, cdw11: 0xFFFF),
                data: data) == .invalidField)

        // AERL is 3: four requests stay outstanding, the fifth is refused.
        let events = EventLog()
        for _ in 0..<4 {
            rig.driver.submitAdmin(SubmissionQueueEntry(opcode: 0x0C)) { events.add($0) }
        }
        #expect(adminStatus(rig, SubmissionQueueEntry(opcode: 0x0C)) == .asynchronousEventRequestLimitExceeded)
        #expect(events.entries.isEmpty)
        // A doorbell write for a queue that does not exist completes one of them.
        rig.controller.write32(bar0: RegisterOffset.doorbell(queue: 9, completion: false, stride: 0), 1)
        rig.controller.write32(bar0: RegisterOffset.doorbell(queue: 1, completion: false, stride: 0), 5000)
        try rig.driver.adminCommand(SubmissionQueueEntry(opcode: 0x0A, cdw10: 7))  // reaps what came before it
        let got = events.entries
        #expect(got.count == 2)
        #expect(got.first?.dw0 == AsynchronousEvent.completionDW0(type: 0, info: 0, logPage: 1))
        #expect(got.last?.dw0 == AsynchronousEvent.completionDW0(type: 0, info: 1, logPage: 1))
        #expect(rig.controller.counters.snapshot()[.invalidDoorbellWrites] == 2)
        // The bogus tail was ignored: I/O still works.
        try await rig.qp.flush()
    }
}

final class EventLog: @unchecked Sendable {
    private let lock = ConditionMutex()
    private var list: [CompletionQueueEntry] = []
    func add(_ e: CompletionQueueEntry) { lock.withLock { list.append(e) } }
    var entries: [CompletionQueueEntry] { lock.withLock { list } }
}
