import BlockBackends
import DMA
import Foundation
import NVMe
import NVMeController
import NVMeHost
import TestSupport
import Testing

/// I/O commands end to end: large transfers through chained PRP lists, and every
/// error a command can meet coming back as the right NVMe status.
@Suite(.timeLimit(.minutes(30))) struct CommandStatusTests {
    /// MDTS 10 = 4 MiB: one Read/Write of 1024 pages needs two PRP list pages.
    @Test(arguments: [512, 4096])
    func fourMiBThroughChainedPRPLists(blockSize: Int) async throws {
        var c = Rig.Config()
        c.controller.maximumDataTransferSize = 10
        c.blockSize = blockSize
        let rig = try Rig(c)
        defer { rig.close() }
        try await guarded(rig) {
            let qp = rig.qp
            #expect(qp.limits.maximumTransferBytes == 4 << 20)
            #expect(PRPList.listPagesNeeded(forDataPages: 1024) == 2)
            let data = randomBytes(4 << 20, seed: 99)
            let lba = UInt64(8 * 4096 / blockSize)
            try await qp.write(lba: lba, data)
            let back = try await qp.read(lba: lba, blocks: (4 << 20) / blockSize)
            expectBytes(back, data)
            let h = qp.counters.snapshot()
            #expect(h[.commandsSubmitted] == 2, "one command each way, no split")
            #expect(h[.splitRequests] == 0)
            let d = rig.controller.counters.snapshot()
            #expect(d[.bytesWritten] == 4 << 20 && d[.bytesRead] == 4 << 20)
            #expect(d[.commandErrors] == 0)
            // Straight from the backend, too.
            var direct = [UInt8](repeating: 0, count: 4 << 20)
            try direct.withUnsafeMutableBytes { try rig.backends[0].read(at: 8 * 4096, into: $0) }
            expectBytes(direct, data)
            // A bigger request is split at 4 MiB and still reads back.
            let big = randomBytes(9 << 20, seed: 7)
            try await qp.write(lba: 0, big)
            expectBytes(try await qp.read(lba: 0, blocks: (9 << 20) / blockSize), big)
            #expect(qp.counters.snapshot()[.splitRequests] == 2)
        }
    }

    @Test func statusesOfBadCommands() async throws {
        var c = Rig.Config()
        c.controller.maximumDataTransferSize = 10
        let rig = try Rig(c)
        defer { rig.close() }
        try await guarded(rig) {
            let qp = rig.qp
            let blocks = rig.driver.namespaces[0].blockCount
            let buffer = try #require(DMABuffer(memory: rig.memory, byteCount: 8192))
            let data = QueuePair.DataPages(buffer: buffer, first: 0, count: 2)
            func read(nsid: UInt32 = 1, lba: UInt64, blocks: Int) -> SubmissionQueueEntry {
                var e = SubmissionQueueEntry(opcode: IOOpcode.read.rawValue, namespaceIdentifier: nsid)
                e.startingLBA = lba
                e.dwords[12] = UInt32(blocks - 1)
                return e
            }
            // Above MDTS: 4 MiB + one block.
            #expect(await rawCommand(qp, read(lba: 0, blocks: 8193)).status == .invalidField)
            #expect(await rawCommand(qp, read(lba: 0, blocks: 16), data: data).status == .success)
            // Outside the namespace, including an LBA whose end overflows.
            #expect(await rawCommand(qp, read(lba: blocks - 1, blocks: 2), data: data).status == .lbaOutOfRange)
            #expect(await rawCommand(qp, read(lba: blocks, blocks: 1), data: data).status == .lbaOutOfRange)
            #expect(await rawCommand(qp, read(lba: UInt64.max, blocks: 2), data: data).status == .lbaOutOfRange)
            #expect(await rawCommand(qp, read(lba: blocks - 1, blocks: 1), data: data).status == .success)
            // Bad namespace ids.
            for nsid: UInt32 in [0, 2, 0xFFFF_FFFF] {
                #expect(
                    await rawCommand(qp, read(nsid: nsid, lba: 0, blocks: 1), data: data).status
                        == .invalidNamespaceOrFormat)
            }
            var wz = SubmissionQueueEntry(opcode: IOOpcode.writeZeroes.rawValue, namespaceIdentifier: 7)
            #expect(await rawCommand(qp, wz).status == .invalidNamespaceOrFormat)
            wz.namespaceIdentifier = 1
            wz.startingLBA = blocks
            #expect(await rawCommand(qp, wz).status == .lbaOutOfRange)
            // Unknown and admin-only opcodes on an I/O queue.
            for op: UInt8 in [0x7F, 0x06, 0x05, 0xFF] {
                #expect(
                    await rawCommand(qp, SubmissionQueueEntry(opcode: op, namespaceIdentifier: 1)).status
                        == .invalidCommandOpcode,
                    "opcode \(op)")
            }
            // Fused / SGL bits.
            #expect(
                await rawCommand(qp, SubmissionQueueEntry(opcode: 0x00, flags: 0x40, namespaceIdentifier: 1)).status
                    == .invalidField)
            // A data pointer the controller cannot reach.
            var bad = read(lba: 0, blocks: 1)
            bad.prp1 = 0x1000
            #expect(await rawCommand(qp, bad).status == .dataTransferError)
            bad.prp1 = buffer.pages[0] + 2
            #expect(await rawCommand(qp, bad).status == .invalidPRPOffset)

            // Through the block API, as typed errors.
            do throws(NVMeError) {
                _ = try await qp.read(lba: blocks - 4, blocks: 8)
                Issue.record("read past the end succeeded")
            } catch {
                #expect(error.status == .lbaOutOfRange)
                #expect(error.kind == .status(.lbaOutOfRange))
            }
            #expect(rig.controller.counters.snapshot()[.commandErrors] >= 14)
        }
    }

    /// Dataset Management checks every range before deallocating any.
    @Test func datasetManagementWithABadRangeDeallocatesNothing() async throws {
        let rig = try Rig()
        defer { rig.close() }
        try await guarded(rig) {
            let qp = rig.qp
            let blocks = rig.driver.namespaces[0].blockCount
            let data = randomBytes(64 * 512, seed: 3)
            try await qp.write(lba: 0, data)
            try await qp.write(lba: 1024, data)
            let backend = try #require(rig.backends[0] as? MemoryBackend)
            let allocated = backend.allocatedByteCount
            do throws(NVMeError) {
                try await qp.deallocate(ranges: [
                    (lba: 0, blocks: 64), (lba: 1024, blocks: 64), (lba: blocks - 1, blocks: 2),
                ])
                Issue.record("deallocate with a bad range succeeded")
            } catch {
                #expect(error.status == .lbaOutOfRange)
            }
            #expect(backend.allocatedByteCount == allocated)
            expectBytes(try await qp.read(lba: 0, blocks: 64), data)
            expectBytes(try await qp.read(lba: 1024, blocks: 64), data)
            // A good one does deallocate (and reads zeroes).
            try await qp.deallocate(ranges: [(lba: 0, blocks: 64), (lba: 1024, blocks: 64)])
            #expect(backend.allocatedByteCount == 0)
            expectBytes(try await qp.read(lba: 0, blocks: 64), [UInt8](repeating: 0, count: 64 * 512))
            // Without the Deallocate attribute the command is advisory: success, nothing freed.
            try await qp.write(lba: 0, data)
            let buffer = try #require(DMABuffer(memory: rig.memory, byteCount: 4096))
            DatasetManagementRange(startingLBA: 0, blockCount: 64).bytes16.withUnsafeBytes { buffer.copyIn(from: $0) }
            var e = SubmissionQueueEntry(opcode: IOOpcode.datasetManagement.rawValue, namespaceIdentifier: 1)
            e.dwords[10] = 0
            #expect(await rawCommand(qp, e, data: .init(buffer: buffer, first: 0, count: 1)).status == .success)
            expectBytes(try await qp.read(lba: 0, blocks: 64), data)
        }
    }

    /// Write Zeroes splits at 65536 blocks, Dataset Management at 256 ranges.
    @Test func writeZeroesAndDeallocateSplitAtCommandLimits() async throws {
        var c = Rig.Config()
        c.namespaceBytes = 96 << 20  // 196 608 blocks
        let rig = try Rig(c)
        defer { rig.close() }
        try await guarded(rig) {
            let qp = rig.qp
            let blocks = rig.driver.namespaces[0].blockCount
            let backend = try #require(rig.backends[0] as? MemoryBackend)
            let probes: [UInt64] = [0, 65535, 65536, 65544, 131071, 131072, blocks - 1]
            let one = randomBytes(512, seed: 8)
            for p in probes { try await qp.write(lba: p, one) }
            let before = rig.controller.counters.snapshot()
            try await qp.writeZeroes(lba: 0, blocks: blocks, deallocate: false)
            #expect(rig.controller.counters.snapshot()[.writeZeroes] - before[.writeZeroes] == 3)
            for p in probes {
                expectBytes(try await qp.read(lba: p, blocks: 1), [UInt8](repeating: 0, count: 512), "lba \(p)")
            }
            #expect(backend.allocatedByteCount == 0)

            let ranges = (0..<300).map { (lba: UInt64($0 * 16), blocks: UInt64(8)) }
            let eight = randomBytes(4096, seed: 9)
            for r in ranges { try await qp.write(lba: r.lba, eight) }
            #expect(backend.allocatedByteCount == 300 * 4096)
            try await qp.deallocate(ranges: ranges)
            #expect(rig.controller.counters.snapshot()[.datasetManagement] - before[.datasetManagement] == 2)
            #expect(backend.allocatedByteCount == 0)
            #expect(qp.counters.snapshot()[.splitRequests] == 2)
        }
    }

    @Test func readOnlyNamespaceRefusesWrites() async throws {
        var c = Rig.Config()
        c.backend = { try MemoryBackend(byteCount: $0, readOnly: true) }
        let rig = try Rig(c)
        defer { rig.close() }
        try await guarded(rig) {
            let qp = rig.qp
            #expect(rig.driver.namespaces[0].isWriteProtected)
            func expectProtected(_ what: String, _ body: () async throws(NVMeError) -> Void) async {
                do throws(NVMeError) {
                    try await body()
                    Issue.record("\(what) on a read-only namespace succeeded")
                } catch {
                    #expect(error.status == .namespaceWriteProtected, "\(what): \(error)")
                }
            }
            await expectProtected("write") { () async throws(NVMeError) in
                try await qp.write(lba: 0, [UInt8](repeating: 1, count: 512))
            }
            await expectProtected("write zeroes") { () async throws(NVMeError) in
                try await qp.writeZeroes(lba: 0, blocks: 8, deallocate: false)
            }
            await expectProtected("deallocate") { () async throws(NVMeError) in
                try await qp.deallocate(ranges: [(lba: 0, blocks: 8)])
            }
            // Reads and flushes still work.
            expectBytes(try await qp.read(lba: 0, blocks: 1), [UInt8](repeating: 0, count: 512))
            try await qp.flush()
        }
    }

    /// Backend errno → NVMe status → typed NVMeError; other ranges keep working.
    @Test func injectedBackendFaults() async throws {
        var c = Rig.Config()
        c.backend = { try FaultInjectingBackend(wrapping: MemoryBackend(byteCount: $0)) }
        let rig = try Rig(c)
        defer { rig.close() }
        try await guarded(rig) {
            let qp = rig.qp
            let faults = try #require(rig.backends[0] as? FaultInjectingBackend)
            let data = randomBytes(256 * 512, seed: 5)
            try await qp.write(lba: 0, data)

            func expectStatus(_ status: NVMeStatus, _ what: String, _ body: () async throws(NVMeError) -> Void) async {
                do throws(NVMeError) {
                    try await body()
                    Issue.record("\(what) succeeded")
                } catch {
                    #expect(error.kind == .status(status), "\(what): \(error)")
                }
            }
            // EIO on a read range: Unrecovered Read Error, SCT 2 (media) SC 81h.
            faults.addRule(.init(operations: .read, range: (16 * 512)..<(24 * 512), errno: EIO))
            await expectStatus(.unrecoveredReadError, "read over the bad range") { () async throws(NVMeError) in
                _ = try await qp.read(lba: 8, blocks: 16)
            }
            await expectStatus(.unrecoveredReadError, "read inside it") { () async throws(NVMeError) in
                _ = try await qp.read(lba: 20, blocks: 1)
            }
            #expect(NVMeStatus.unrecoveredReadError.codeType == 2 && NVMeStatus.unrecoveredReadError.code == 0x81)
            expectBytes(try await qp.read(lba: 0, blocks: 16), data[0..<(16 * 512)])
            expectBytes(try await qp.read(lba: 24, blocks: 8), data[(24 * 512)..<(32 * 512)])

            // EIO on a write range: Write Fault (SCT 2 SC 80h); the data there is unchanged.
            faults.addRule(.init(operations: .write, range: (64 * 512)..<(72 * 512), errno: EIO))
            await expectStatus(.writeFault, "write over the bad range") { () async throws(NVMeError) in
                try await qp.write(lba: 64, [UInt8](repeating: 0xEE, count: 8 * 512))
            }
            #expect(NVMeStatus.writeFault.codeType == 2 && NVMeStatus.writeFault.code == 0x80)
            expectBytes(try await qp.read(lba: 64, blocks: 8), data[(64 * 512)..<(72 * 512)])

            // ENOSPC: Capacity Exceeded (SCT 0 SC 81h), for writes and Write Zeroes.
            faults.addRule(.init(operations: [.write, .writeZeroes], range: (128 * 512)..<(136 * 512), errno: ENOSPC))
            await expectStatus(.capacityExceeded, "write into a full range") { () async throws(NVMeError) in
                try await qp.write(lba: 130, [UInt8](repeating: 1, count: 512))
            }
            await expectStatus(.capacityExceeded, "write zeroes into a full range") { () async throws(NVMeError) in
                try await qp.writeZeroes(lba: 128, blocks: 8, deallocate: false)
            }
            // Flush errors are write faults.
            let flushRule = faults.addRule(.init(operations: .flush, errno: EIO, failureLimit: 1))
            await expectStatus(.writeFault, "flush") { () async throws(NVMeError) in try await qp.flush() }
            #expect(faults.faultCount(for: flushRule) == 1)
            try await qp.flush()

            // Everything else keeps working.
            let other = randomBytes(32 * 512, seed: 6)
            try await qp.write(lba: 160, other)
            expectBytes(try await qp.read(lba: 160, blocks: 32), other)
            #expect(qp.counters.snapshot()[.errors] == 6)
            faults.removeAllRules()
            expectBytes(try await qp.read(lba: 0, blocks: 160), data[0..<(160 * 512)])
        }
    }
}

extension DatasetManagementRange {
    var bytes16: [UInt8] {
        var out = [UInt8](repeating: 0, count: 16)
        out.withUnsafeMutableBytes { encode(into: $0) }
        return out
    }
}
