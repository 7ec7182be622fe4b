import DMA
import Foundation
import NVMe
import NVMeController
import PCIe
import TestSupport
import Testing

@testable import NVMeHost

/// The driver and the device under reset and failure: each test pins one defect
/// a reading against Linux nvme-pci, QEMU hw/nvme and SPDK found (and fails with
/// the defect put back). The racy ones are meant for ThreadSanitizer
/// (`scripts/test --sanitizers`); without it they still check the outcome.
@Suite(.timeLimit(.minutes(30))) struct DriverDeviceDefectTests {
    // MARK: 1. A reset must not replay stale commands

    @Test("a commit during bring-up after a reset does not hand the new queue the old tail", arguments: [false, true])
    func resetDoesNotReplayStaleCommands(shadow: Bool) async throws {
        // 0: idle; 1: the reset is on, waiting for the queue to be deleted; 2: it
        // was; 3: it was created again and the commit went in.
        let stage = Shared(0)
        let rigBox = Shared<Rig?>(nil)
        // With MMIO doorbells the stale tail reaches the new queue at once; with
        // shadow doorbells the bring-up's Doorbell Buffer Config overwrites it.
        var c = Rig.Config.stepped(depth: 8, shadow: shadow)
        // In the middle of the reset's bring-up — the I/O SQ created again, the
        // queue pair not yet live — a commit arrives, as an event loop's would.
        c.afterStep = {
            guard let rig = rigBox.value else { return }
            let exists = rig.controller.submissionQueueState(1) != nil
            switch stage.value {
            case 1 where !exists: stage.withLock { $0 = 2 }
            case 2 where exists:
                stage.withLock { $0 = 3 }
                rig.qp.commitSubmissions()
                // A running controller takes a trap at once.
                rig.controller.step()
            default: break
            }
        }
        let rig = try Rig(c)
        defer { rig.close() }
        rigBox.withLock { $0 = rig }
        let qp = rig.qp
        let results = Shared<[NVMeStatus]>([])
        for i in 0..<3 {
            var e = SubmissionQueueEntry(opcode: IOOpcode.write.rawValue, namespaceIdentifier: 1)
            e.startingLBA = UInt64(i * 8)
            e.numberOfLogicalBlocks0 = 7
            let b = try #require(DMABuffer(memory: rig.memory, byteCount: 4096))
            qp.submit(e, data: QueuePair.DataPages(buffer: b, first: 0, count: 1), deferDoorbell: true) { cqe in
                _ = b
                results.withLock { $0.append(cqe.status) }
            }
        }
        stage.withLock { $0 = 1 }
        _ = try rig.driver.reset()
        #expect(stage.value == 3, "the commit did not land between Create I/O SQ and activation")
        for _ in 0..<10 {
            rig.controller.runUntilIdle()
            qp.processCompletions()
        }
        #expect(results.value.count == 3, "\(results.value)")
        #expect(results.value.allSatisfy { $0.isSuccess }, "\(results.value)")
        #expect(rig.controller.counters.snapshot()[.writes] == 3, "stale SQ entries were executed again")
        let state = try #require(rig.controller.submissionQueueState(1))
        #expect(state.head == state.tail, "controller head out of step: \(state)")
    }

    // MARK: 2 and 3. Driver state and reaped failures are read and written under locks

    @Test("resets while other threads read what the driver learned and reap completions (ThreadSanitizer)")
    func resetsAgainstReaders() async throws {
        var c = Rig.Config()
        c.depth = 16
        c.queuePairs = 2
        let rig = try Rig(c)
        defer { rig.close() }
        let stop = Shared(false)
        let reader = OwnThread { () -> Int in
            var n = 0
            while !stop.value {
                n += rig.driver.namespaces.count + Int(rig.driver.limits.maximumTransferBytes & 1)
                n += rig.driver.shadowDoorbellsEnabled ? 1 : 0
                n += Int(rig.driver.identify[.mdts])
                _ = rig.driver.doorbellBufferAddresses
            }
            return n
        }
        try await guarded(rig, seconds: 120) {
            for round in 0..<5 {
                // Load on both pairs while the reset runs, some of it waiting for slots.
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for i in 0..<40 {
                        let qp = rig.driver.queuePairs[i % 2]
                        group.addTask {
                            try await qp.write(lba: UInt64(i * 8), randomBytes(4096, seed: UInt64(round * 100 + i)))
                        }
                    }
                    group.addTask { _ = try rig.driver.reset() }
                    try await group.waitForAll()
                }
            }
        }
        stop.withLock { $0 = true }
        _ = await reader.value()
    }

    @Test("a command that cannot be placed when a queue comes back fails at once, not at the next interrupt")
    func placementFailureDeliveredPromptly() throws {
        var c = Rig.Config.stepped()
        c.memoryBytes = 48 << 20
        let rig = try Rig(c)
        defer { rig.close() }
        let qp = rig.qp
        // A transfer of 1025 pages needs three PRP list pages; take every other
        // page of the arena so the two extra ones cannot be had.
        let big = try #require(DMABuffer(memory: rig.memory, byteCount: 1025 * 4096))
        var hoard: [UInt64] = []
        while let p = rig.memory.allocatePage() { hoard.append(p) }
        defer { rig.memory.freePages(hoard) }
        _ = qp.deactivate(maxRetries: 5, failure: .commandAbortedSQDeletion)
        let result = Shared<NVMeStatus?>(nil)
        var e = SubmissionQueueEntry(opcode: IOOpcode.write.rawValue, namespaceIdentifier: 1)
        e.numberOfLogicalBlocks0 = UInt16(1025 * 8 - 1)
        qp.submit(e, data: QueuePair.DataPages(buffer: big, first: 0, count: 1025)) { cqe in
            result.withLock { $0 = cqe.status }
        }
        #expect(result.value == nil, "the queue is down: the command waits")
        qp.activate(shadow: nil)
        #expect(
            result.value == .dataTransferError,
            "delivered when the queue came back: \(String(describing: result.value))")
    }

    // MARK: 4. A deferred doorbell is rung before a command waits for a slot

    @Test("commands placed with a deferred doorbell are rung when the next one must wait for a slot")
    func deferredDoorbellRungBeforeWaiting() async throws {
        var c = Rig.Config()
        c.depth = 4  // three command slots
        let rig = try Rig(c)
        defer { rig.close() }
        let done = Shared(0)
        try await guarded(rig, seconds: 30) {
            let qp = rig.qp
            for i in 0..<3 {
                var e = SubmissionQueueEntry(opcode: IOOpcode.flush.rawValue, namespaceIdentifier: 1)
                e.dwords[10] = UInt32(i)
                qp.submit(e, deferDoorbell: true) { _ in done.withLock { $0 += 1 } }
            }
            // No slot is free: this one waits, and nothing else will ring.
            qp.submit(SubmissionQueueEntry(opcode: IOOpcode.flush.rawValue, namespaceIdentifier: 1)) { _ in
                done.withLock { $0 += 1 }
            }
            #expect(
                await eventually(10) { done.value == 4 },
                "\(done.value) of 4 completed: the deferred ones were never rung")
        }
    }

    // MARK: 5. Doorbell Buffer Config refused: MMIO doorbells, a warning

    @Test("a controller that refuses Doorbell Buffer Config leaves the driver on MMIO doorbells, with a warning")
    func doorbellBufferConfigFallback() async throws {
        var c = Rig.Config()
        c.controller.doorbellBufferConfigFailure = .invalidField
        let rig = try Rig(c)
        defer { rig.close() }
        #expect(!rig.driver.shadowDoorbellsEnabled)
        #expect(rig.driver.doorbellBufferAddresses == nil)
        #expect(rig.driver.warnings.contains { $0.contains("Doorbell Buffer Config") }, "\(rig.driver.warnings)")
        try await guarded(rig) {
            let data = randomBytes(8192, seed: 3)
            try await rig.qp.write(lba: 0, data)
            expectBytes(try await rig.qp.read(lba: 0, blocks: 16), data)
            _ = try rig.driver.reset()
            try await rig.qp.flush()
        }
        #expect(rig.qp.counters.snapshot()[.sqMMIODoorbellWrites] > 0)
        #expect(rig.qp.counters.snapshot()[.sqShadowDoorbellWrites] == 0)
    }

    // MARK: 6. enable() reads the register file under the lock

    @Test("enables racing register writes from another host thread (ThreadSanitizer)")
    func enableAgainstRegisterWrites() async throws {
        let rig = try Rig(Rig.Config())
        defer { rig.close() }
        let device = rig.controller
        let aqa = device.read32(bar0: RegisterOffset.aqa)
        let asq = device.read64(bar0: RegisterOffset.asq)
        let acq = device.read64(bar0: RegisterOffset.acq)
        let stop = Shared(false)
        let writer = OwnThread { () -> Int in
            var n = 0
            while !stop.value {
                // The same values again: harmless, but recorded under the lock while
                // the controller may be reading them in enable().
                device.write32(bar0: RegisterOffset.aqa, aqa)
                device.write64(bar0: RegisterOffset.asq, asq)
                device.write64(bar0: RegisterOffset.acq, acq)
                n += 1
            }
            return n
        }
        try await guarded(rig, seconds: 120) {
            for _ in 0..<20 { _ = try rig.driver.reset() }
        }
        stop.withLock { $0 = true }
        #expect((await writer.value() ?? 0) > 0)
    }

    // MARK: 7. "Never trap" follows the head

    @Test("while the controller is awake the host never traps, however full the queue runs")
    func neverTrapFollowsTheHead() throws {
        let rig = try Rig.stepped(depth: 8)
        defer { rig.close() }
        let qp = rig.qp
        func flush() {
            qp.submit(SubmissionQueueEntry(opcode: IOOpcode.flush.rawValue, namespaceIdentifier: 1)) { _ in }
        }
        let before = qp.counters.snapshot()[.sqMMIODoorbellWrites]
        // Three consumed (less than half the queue), then the queue filled past
        // where the first EventIdx stood — the controller never parked.
        for _ in 0..<3 { flush() }
        rig.controller.step()
        qp.processCompletions()
        for _ in 0..<7 { flush() }
        rig.controller.step()
        qp.processCompletions()
        for _ in 0..<7 { flush() }
        #expect(
            qp.counters.snapshot()[.sqMMIODoorbellWrites] == before, "the host trapped while the controller was awake")
        while qp.outstandingCount > 0 {
            rig.controller.runUntilIdle()
            qp.processCompletions()
        }
    }

    // MARK: 8. A bad shadow tail is reported once

    @Test("an out-of-range shadow tail raises one asynchronous event, not one per round")
    func invalidShadowTailReportedOnce() throws {
        let rig = try Rig.stepped(depth: 8)
        defer { rig.close() }
        let (shadowPage, _) = try #require(rig.driver.doorbellBufferAddresses)
        let sqShadow = try #require(rig.memory.word(at: shadowPage + 8))
        sqShadow.storeRelease(100)
        for _ in 0..<20 { rig.controller.step() }
        #expect(rig.controller.counters.snapshot()[.invalidDoorbellWrites] == 1)
        sqShadow.storeRelease(0)
        rig.controller.step()
        sqShadow.storeRelease(200)
        for _ in 0..<5 { rig.controller.step() }
        #expect(rig.controller.counters.snapshot()[.invalidDoorbellWrites] == 2, "a new bad value is a new event")
        sqShadow.storeRelease(0)
        rig.controller.step()
    }

    // MARK: 9. Shutdown on the SHN transition; SHST cleared with SHN

    @Test("shutdown runs once per CC.SHN 00b → non-zero, and clearing SHN clears SHST")
    func shutdownTransitions() throws {
        try Rig.withEnabled { rig, cc in
            let device = rig.controller
            let shn: UInt32 = 1 << 14
            func shst() -> UInt8 { ControllerStatus(raw: device.read32(bar0: RegisterOffset.csts)).shutdownStatus }
            device.writeCCAndStep(cc | shn)
            #expect(shst() == 0b10)
            #expect(device.counters.snapshot()[.shutdowns] == 1)
            device.writeCCAndStep(cc | shn)  // the same CC again
            #expect(device.counters.snapshot()[.shutdowns] == 1, "a repeated SHN ran the shutdown again")
            device.writeCCAndStep(cc)
            #expect(shst() == 0b00, "SHST kept after SHN was cleared")
            device.writeCCAndStep(cc | shn)
            #expect(device.counters.snapshot()[.shutdowns] == 2)

        }
    }

    // MARK: 10. A failed enable reports CSTS.CFS

    @Test("an enable the controller cannot honour sets CSTS.CFS at once")
    func failedEnableSetsFatalStatus() throws {
        try Rig.withEnabled { rig, cc in
            let device = rig.controller
            device.writeCCAndStep(0)
            device.write32(bar0: RegisterOffset.aqa, 0)  // one-entry admin queues: invalid
            device.writeCCAndStep(cc)
            let csts = ControllerStatus(raw: device.read32(bar0: RegisterOffset.csts))
            #expect(!csts.ready)
            #expect(csts.fatal, "a failed enable left CSTS.CFS clear: the host would wait out CAP.TO")
            // The driver brings it back.
            _ = try rig.driver.reset()
            #expect(ControllerStatus(raw: device.read32(bar0: RegisterOffset.csts)).ready)

        }
    }

    // MARK: The PCIe seam: MSI-X mask writes are traps; held messages arrive on unmask

    @Test("masking a vector is a counted trap; a message raised while masked is sent on unmask")
    func msixMaskIsATrap() throws {
        let messages = Shared(0)
        let rig = try Rig(.stepped(interrupts: .custom { _ in messages.withLock { $0 += 1 } }))
        defer { rig.close() }
        let qp = rig.qp
        let device = rig.controller
        let writes = device.counters.snapshot()[.mmioMSIXWrites]
        qp.maskInterrupt(true)
        device.step()
        #expect(device.counters.snapshot()[.mmioMSIXWrites] == writes + 1)
        let control = device.msix.vectorControl(qp.interrupt.vector)
        #expect(device.read32(bar0: control) & MSIXTable.maskBit != 0)
        qp.submit(SubmissionQueueEntry(opcode: IOOpcode.flush.rawValue, namespaceIdentifier: 1)) { _ in }
        device.runUntilIdle()
        #expect(messages.value == 0, "a masked vector sent its message")
        #expect(device.counters.snapshot()[.interruptsHeld] >= 1)
        let pbaWord = device.read32(bar0: device.msix.pendingBitArrayOffset)
        #expect(pbaWord & (1 << UInt32(qp.interrupt.vector)) != 0, "Pending Bit")
        qp.maskInterrupt(false)
        #expect(messages.value == 1, "unmasking sends the held message")
        device.step()
        #expect(device.counters.snapshot()[.mmioMSIXWrites] == writes + 2)
        #expect(qp.processCompletions() == 1)
    }
}

extension Rig {
    /// Runs `body` with a started stepped rig and the CC value its driver enabled
    /// the controller with (the register tests flip bits of it), closing the rig after.
    static func withEnabled(_ body: (Rig, UInt32) throws -> Void) throws {
        let rig = try Rig.stepped()
        defer { rig.close() }
        try body(rig, rig.controller.read32(bar0: RegisterOffset.cc))
    }
}

extension EmulatedController {
    /// Writes CC and lets the stepped controller act on it: how these tests flip
    /// CC.EN and CC.SHN.
    func writeCCAndStep(_ value: UInt32) {
        write32(bar0: RegisterOffset.cc, value)
        step()
    }
}
