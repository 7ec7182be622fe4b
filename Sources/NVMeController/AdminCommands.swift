import BlockBackends
import DMA
import NVMe

/// Admin command set (NVMe Base Specification 2.0, §5).
extension ControllerCore {
    func execute(_ entry: SubmissionQueueEntry, on sq: DeviceSubmissionQueue) {
        commandsThisRound += 1
        // CDW0 bits 9:8 FUSE and 15:14 PSDT must be 0: no fused commands, PRPs only.
        guard entry.flags == 0 else {
            complete(sq, cid: entry.commandIdentifier, status: .invalidField)
            return
        }
        if sq.id == 0 {
            counters.add(.adminCommands)
            executeAdmin(entry, on: sq)
        } else {
            executeIO(entry, on: sq)
        }
    }

    private func executeAdmin(_ e: SubmissionQueueEntry, on sq: DeviceSubmissionQueue) {
        let cid = e.commandIdentifier
        switch AdminOpcode(rawValue: e.opcode) {
        case .identify: complete(sq, cid: cid, status: identify(e))
        case .setFeatures:
            let (s, dw0) = setFeatures(e)
            complete(sq, cid: cid, status: s, dw0: dw0)
        case .getFeatures:
            let (s, dw0) = getFeatures(e)
            complete(sq, cid: cid, status: s, dw0: dw0)
        case .createIOCompletionQueue: complete(sq, cid: cid, status: createCompletionQueue(e))
        case .createIOSubmissionQueue: complete(sq, cid: cid, status: createSubmissionQueue(e))
        case .deleteIOSubmissionQueue: complete(sq, cid: cid, status: deleteSubmissionQueue(e))
        case .deleteIOCompletionQueue: complete(sq, cid: cid, status: deleteCompletionQueue(e))
        case .doorbellBufferConfig:
            guard options.doorbellBufferConfig else {
                complete(sq, cid: cid, status: .invalidCommandOpcode)
                return
            }
            complete(sq, cid: cid, status: configureDoorbellBuffer(e))
        case .abort:
            // Backend work already started is not interrupted (a best effort the
            // specification allows): DW0 bit 0 set = "command not aborted" (§5.1).
            complete(sq, cid: cid, status: .success, dw0: 1)
        case .asynchronousEventRequest:
            guard outstandingAsyncEvents.count <= Int(IdentifyController()[.aerl]) else {
                complete(sq, cid: cid, status: .asynchronousEventRequestLimitExceeded)
                return
            }
            outstandingAsyncEvents.append((cid, sq))
            deliverAsyncEvents()
        case .getLogPage: complete(sq, cid: cid, status: getLogPage(e))
        default:  // Keep Alive (no keep-alive timer here) and unassigned opcodes
            complete(sq, cid: cid, status: .invalidCommandOpcode)
        }
    }

    // MARK: Identify (§5.17)

    func identifyController() -> IdentifyController {
        var id = IdentifyController()
        id[text: .sn] = options.serialNumber
        id[text: .mn] = options.modelNumber
        id[.mdts] = UInt64(options.maximumDataTransferSize)
        id[.cntlid] = UInt64(options.controllerID)
        id.supportsDoorbellBufferConfig = options.doorbellBufferConfig
        id[.nn] = UInt64(namespaces.count)
        id[.vwc] = namespaces.contains { $0.backend.hasVolatileWriteCache } ? 1 : 0
        return id
    }

    private func identify(_ e: SubmissionQueueEntry) -> NVMeStatus {
        let cns = UInt8(truncatingIfNeeded: e.dwords[10])
        var bytes = [UInt8](repeating: 0, count: IdentifyController.size)
        switch IdentifyCNS(rawValue: cns) {
        case .controller:
            bytes = identifyController().encode()
        case .namespace:
            guard let ns = namespace(e.namespaceIdentifier) else { return .invalidNamespaceOrFormat }
            bytes = ns.identify(allocatedBytes: (ns.backend as? MemoryBackend)?.allocatedByteCount).encode()
        case .namespaceIndependent:
            guard let ns = namespace(e.namespaceIdentifier) else { return .invalidNamespaceOrFormat }
            bytes = ns.identifyIndependent().encode()
        case .activeNamespaceList:
            guard e.namespaceIdentifier < 0xFFFF_FFFE else { return .invalidNamespaceOrFormat }
            var o = 0
            for ns in namespaces where ns.id > e.namespaceIdentifier && o < bytes.count {
                bytes.put32(ns.id, at: o)
                o += 4
            }
        case nil:
            return .invalidField
        }
        return copyToHost(bytes, e) ?? .success
    }

    func namespace(_ nsid: UInt32) -> Namespace? {
        guard nsid >= 1, Int(nsid) <= namespaces.count else { return nil }
        return namespaces[Int(nsid) - 1]
    }

    // MARK: Features (§5.27)

    private func setFeatures(_ e: SubmissionQueueEntry) -> (NVMeStatus, UInt32) {
        if e.dwords[10] & (1 << 31) != 0 { return (.featureIdentifierNotSaveable, 0) }
        switch FeatureIdentifier(rawValue: UInt8(truncatingIfNeeded: e.dwords[10])) {
        case .numberOfQueues:
            let nsqr = Int(e.dwords[11] & 0xFFFF)
            let ncqr = Int(e.dwords[11] >> 16)
            guard nsqr != 0xFFFF, ncqr != 0xFFFF else { return (.invalidField, 0) }
            // Only during initialization, before any I/O queue exists (§5.27.1.5).
            guard grantedQueues == nil || activeSubmissionQueueIDs.count <= 1 && !hasIOCompletionQueues else {
                return (.commandSequenceError, 0)
            }
            let max = options.maximumIOQueuePairs
            let granted = (submission: min(nsqr + 1, max), completion: min(ncqr + 1, max))
            grantedQueues = granted
            return (.success, UInt32(granted.completion - 1) << 16 | UInt32(granted.submission - 1))
        case .volatileWriteCache:
            guard namespaces.contains(where: { $0.backend.hasVolatileWriteCache }) else { return (.invalidField, 0) }
            volatileWriteCacheEnabled = e.dwords[11] & 1 != 0
            return (.success, 0)
        case let feature where StoredFeatures.isStored(feature):
            storedFeatures.set(feature, e.dwords[11])
            return (.success, 0)
        case .powerManagement:
            guard e.dwords[11] & 0x1F == 0 else { return (.invalidField, 0) }  // one power state
            return (.success, 0)
        default:  // Interrupt Vector Configuration (not settable here), unknown identifiers
            return (.invalidField, 0)
        }
    }

    private var hasIOCompletionQueues: Bool { activeCompletionQueues.contains { $0.id != 0 } }

    private func getFeatures(_ e: SubmissionQueueEntry) -> (NVMeStatus, UInt32) {
        let select = (e.dwords[10] >> 8) & 0x7
        guard select <= 3 else { return (.invalidField, 0) }
        if select == 3 { return (.success, 0) }  // capabilities: not saveable, not changeable per namespace
        switch FeatureIdentifier(rawValue: UInt8(truncatingIfNeeded: e.dwords[10])) {
        case .numberOfQueues:
            let max = options.maximumIOQueuePairs
            let g = (select == 0 ? grantedQueues : nil) ?? (max, max)
            return (.success, UInt32(g.completion - 1) << 16 | UInt32(g.submission - 1))
        case .volatileWriteCache:
            let present = namespaces.contains { $0.backend.hasVolatileWriteCache }
            return (.success, present && (select != 0 || volatileWriteCacheEnabled) ? 1 : 0)
        case let feature where StoredFeatures.isStored(feature):
            return (.success, select == 0 ? storedFeatures.current(feature) : StoredFeatures.defaultValue(feature))
        case .powerManagement: return (.success, 0)
        case .interruptVectorConfiguration:
            let iv = e.dwords[11] & 0xFFFF
            guard Int(iv) < vectors.count else { return (.invalidField, 0) }
            return (.success, iv)
        default: return (.invalidField, 0)  // unknown identifiers (the stored features matched above)
        }
    }

    // MARK: Queue management (§5.4, §5.5, §5.6, §5.7)

    private var queueLimit: (submission: Int, completion: Int) {
        grantedQueues ?? (options.maximumIOQueuePairs, options.maximumIOQueuePairs)
    }

    private func createCompletionQueue(_ e: SubmissionQueueEntry) -> NVMeStatus {
        let qid = Int(e.dwords[10] & 0xFFFF)
        let qsize0 = Int(e.dwords[10] >> 16)
        let physicallyContiguous = e.dwords[11] & 1 != 0
        let interruptsEnabled = e.dwords[11] & 2 != 0
        let vector = Int(e.dwords[11] >> 16)
        guard qid != 0, qid <= queueLimit.completion, completionQueues[qid] == nil else {
            return .invalidQueueIdentifier
        }
        guard qsize0 != 0, qsize0 < options.maximumQueueEntries else { return .invalidQueueSize }
        guard e.prp1 % UInt64(HostMemory.pageSize) == 0 else { return .invalidPRPOffset }
        guard vector < vectors.count else { return .invalidInterruptVector }
        guard physicallyContiguous else { return .invalidField }
        let size = qsize0 + 1
        guard let base = memory.pointer(at: e.prp1, length: size * CompletionQueueEntry.size) else {
            return .invalidField
        }
        let cq = DeviceCompletionQueue(
            id: UInt16(qid), base: base, size: size, vector: vectors[vector],
            interruptsEnabled: interruptsEnabled)
        attachDoorbellEntries(cq, completion: true)
        completionQueues[qid] = cq
        return .success
    }

    private func createSubmissionQueue(_ e: SubmissionQueueEntry) -> NVMeStatus {
        let qid = Int(e.dwords[10] & 0xFFFF)
        let qsize0 = Int(e.dwords[10] >> 16)
        let physicallyContiguous = e.dwords[11] & 1 != 0
        let cqid = Int(e.dwords[11] >> 16)
        guard cqid != 0, cqid < completionQueues.count, let cq = completionQueues[cqid] else {
            return .completionQueueInvalid
        }
        guard qid != 0, qid <= queueLimit.submission, submissionQueues[qid] == nil else {
            return .invalidQueueIdentifier
        }
        guard qsize0 != 0, qsize0 < options.maximumQueueEntries else { return .invalidQueueSize }
        guard e.prp1 % UInt64(HostMemory.pageSize) == 0 else { return .invalidPRPOffset }
        guard physicallyContiguous else { return .invalidField }
        let size = qsize0 + 1
        guard let base = memory.pointer(at: e.prp1, length: size * SubmissionQueueEntry.size) else {
            return .invalidField
        }
        let sq = DeviceSubmissionQueue(id: UInt16(qid), base: base, size: size, completionQueue: cq)
        attachDoorbellEntries(sq, completion: false)
        cq.attachedSubmissionQueues += 1
        submissionQueues[qid] = sq
        activeSubmissionQueueIDs.append(UInt16(qid))
        activeSubmissionQueueIDs.sort()
        return .success
    }

    private func deleteSubmissionQueue(_ e: SubmissionQueueEntry) -> NVMeStatus {
        let qid = Int(e.dwords[10] & 0xFFFF)
        guard qid != 0, qid < submissionQueues.count, let sq = submissionQueues[qid] else {
            return .invalidQueueIdentifier
        }
        // Commands whose backend work is running finish first and are posted while
        // the queue still exists (QEMU cancels or waits for its AIO the same way).
        // Completions still waiting for room in the completion queue are dropped
        // with the queue.
        drainStorage(post: true)
        let cq = sq.completionQueue
        let kept = cq.backlog[cq.backlogStart...].filter { $0.submissionQueueIdentifier != sq.id }
        cq.backlog = Array(kept)
        cq.backlogStart = 0
        cq.attachedSubmissionQueues -= 1
        outstandingAsyncEvents.removeAll { $0.sq === sq }
        submissionQueues[qid] = nil
        activeSubmissionQueueIDs.removeAll { $0 == UInt16(qid) }
        return .success
    }

    private func deleteCompletionQueue(_ e: SubmissionQueueEntry) -> NVMeStatus {
        let qid = Int(e.dwords[10] & 0xFFFF)
        guard qid != 0, qid < completionQueues.count, let cq = completionQueues[qid] else {
            return .invalidQueueIdentifier
        }
        guard cq.attachedSubmissionQueues == 0 else { return .invalidQueueDeletion }
        completionQueues[qid] = nil
        return .success
    }

    // MARK: Doorbell Buffer Config (NVMe 1.3 §5.7 / 2.0 §5.9)

    /// Shadow Doorbell and EventIdx words for queue `qid` when the buffer is configured.
    func doorbellEntries(qid: Int, completion: Bool) -> (SharedWord, SharedWord)? {
        guard let buffer = doorbellBuffer else { return nil }
        let offset = UInt64((2 * qid + (completion ? 1 : 0)) * (4 << Int(options.doorbellStride)))
        guard offset + 4 <= UInt64(HostMemory.pageSize),
            let shadow = memory.word(at: buffer.shadow + offset),
            let ei = memory.word(at: buffer.eventIndex + offset)
        else { return nil }
        return (shadow, ei)
    }

    /// Gives queue `q` its Shadow Doorbell and EventIdx entries when the doorbell
    /// buffer is configured (at creation, and when Doorbell Buffer Config arrives);
    /// `false` when it is not.
    @discardableResult
    private func attachDoorbellEntries(_ q: DeviceQueue, completion: Bool) -> Bool {
        guard let (shadow, ei) = doorbellEntries(qid: Int(q.id), completion: completion) else { return false }
        q.shadowDoorbell = shadow
        q.eventIndex = ei
        return true
    }

    /// An existing queue switching to its entries: the shadow gets the doorbell value
    /// the controller knows (`doorbell`: an SQ's tail, a CQ's head) and EventIdx
    /// "never trap" (SPDK's policy) or that same value (QEMU leaves EventIdx as the
    /// host zeroed it, which is the value consumed).
    private func switchToShadowDoorbell(_ q: DeviceQueue, doorbell: Int) {
        guard let shadow = q.shadowDoorbell, let ei = q.eventIndex else { return }
        shadow.storeRelease(UInt32(doorbell))
        q.armed = false
        if options.eventIndexPolicy == .spdk {
            writeNeverEventIndex(ei, head: q.head, size: q.size)
        } else {
            ei.storeRelaxed(UInt32(doorbell))
        }
    }

    private func configureDoorbellBuffer(_ e: SubmissionQueueEntry) -> NVMeStatus {
        if let failure = options.doorbellBufferConfigFailure { return failure }
        let page = UInt64(HostMemory.pageSize)
        guard e.prp1 != 0, e.prp2 != 0, e.prp1 % page == 0, e.prp2 % page == 0, e.prp1 != e.prp2,
            memory.pointer(at: e.prp1, length: Int(page)) != nil,
            memory.pointer(at: e.prp2, length: Int(page)) != nil
        else { return .invalidField }
        doorbellBuffer = (e.prp1, e.prp2)
        // Existing queues switch over; the controller writes their current tail and
        // head into the shadow page (as QEMU, SPDK and openvmm do) and EventIdx to
        // "never trap" while it is awake (SPDK's policy) or to what it has consumed
        // (QEMU's). The admin queue stays on MMIO.
        for qid in 1..<submissionQueues.count {
            if let sq = submissionQueues[qid], attachDoorbellEntries(sq, completion: false) {
                switchToShadowDoorbell(sq, doorbell: sq.tail)
            }
            if let cq = completionQueues[qid], attachDoorbellEntries(cq, completion: true) {
                switchToShadowDoorbell(cq, doorbell: cq.head)
            }
        }
        return .success
    }

    // MARK: Get Log Page (§5.16)

    private func getLogPage(_ e: SubmissionQueueEntry) -> NVMeStatus {
        let lid = UInt8(truncatingIfNeeded: e.dwords[10])
        let numd = Int((e.dwords[10] >> 16) | (e.dwords[11] & 0xFFFF) << 16) + 1
        let offset = Int(min(UInt64(e.dwords[13]) << 32 | UInt64(e.dwords[12]), UInt64(Int32.max)))
        guard offset & 3 == 0 else { return .invalidField }
        var page: [UInt8]
        switch LogPageIdentifier(rawValue: lid) {
        case .errorInformation:
            page = [UInt8](repeating: 0, count: 64)
        case .smartHealthInformation:
            page = [UInt8](repeating: 0, count: 512)
            page.put16(0x0143, at: 1)  // composite temperature, 323 K
            page[3] = 100  // available spare
            page[4] = 10  // available spare threshold
            let s = counters.snapshot()
            // Data units are thousands of 512-byte units, rounded up (Figure 207).
            page.put64((s[.bytesRead] / 512 + 999) / 1000, at: 32)
            page.put64((s[.bytesWritten] / 512 + 999) / 1000, at: 48)
            page.put64(s[.reads], at: 64)
            page.put64(s[.writes], at: 80)
        case .firmwareSlotInformation:
            page = [UInt8](repeating: 0, count: 512)
            page[0] = 1
            for (i, c) in "1.0".utf8.enumerated() { page[8 + i] = c }
            for i in 3..<8 { page[8 + i] = 0x20 }
        case nil:
            return .invalidLogPage
        }
        guard offset <= page.count else { return .invalidField }
        // Checked before allocating: NUMD is 32 bits, so the host may ask for 16 GiB.
        guard numd * 4 <= options.maximumTransferBytes else { return .invalidField }
        var out = [UInt8](repeating: 0, count: numd * 4)
        let n = min(out.count, page.count - offset)
        if n > 0 { out.replaceSubrange(0..<n, with: page[offset..<(offset + n)]) }
        return copyToHost(out, e) ?? .success
    }
}
