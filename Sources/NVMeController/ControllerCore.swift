import BlockBackends
import DMA
import NVMe

/// Everything the emulated device does, confined to one thread: the controller
/// thread of ``EmulatedController``, or the test's own thread in stepped mode.
/// Nothing here blocks on the host.
///
/// One round (``runRound()``) walks every submission queue round-robin — the
/// admin queue first — taking up to an arbitration burst of commands from each,
/// executing them against the namespaces, posting completions (holding them while
/// a completion queue is full) and raising interrupts. With the doorbell buffer
/// configured, I/O queue tails and heads come from the Shadow Doorbell page and
/// EventIdx is maintained as README, "EventIdx policies" describes: "never trap"
/// while the controller is awake, "trap on the next write" just before it parks,
/// with a full fence and a re-read in between (``armForPark()``).
final class ControllerCore {
    let memory: HostMemory
    let options: ControllerOptions
    /// The namespaces as run: their engines and in-flight counts, by NSID − 1.
    let runtimes: [NamespaceRuntime]
    /// The namespaces, by NSID − 1 (``runtimes``' namespaces).
    let namespaces: [Namespace]
    /// What a parked controller waits on when storage runs asynchronously (the
    /// engines signal it; traps too). `nil` when every namespace is inline.
    let wake: WakeSignal?
    let counters: ControllerCounters
    let vectors: [InterruptVector]
    let mailbox: TrapMailbox
    /// Shared with host reads; guarded by the mailbox lock.
    var registers: RegisterFile

    // Controller state (controller thread only).
    var enabled = false
    var fatal = false
    /// CC.SHN as last acted on (shutdown runs on the 00b → non-zero transition).
    var acceptedShutdownNotification: UInt8 = 0
    var submissionQueues: [DeviceSubmissionQueue?]
    var completionQueues: [DeviceCompletionQueue?] {
        didSet { activeCompletionQueues = completionQueues.compactMap { $0 } }
    }
    /// The existing completion queues, ascending by id: what a round walks
    /// (instead of every possible slot). Follows ``completionQueues``.
    private(set) var activeCompletionQueues: [DeviceCompletionQueue] = []
    /// Existing submission queue ids, ascending (admin first).
    var activeSubmissionQueueIDs: [UInt16] = []
    var doorbellBuffer: (shadow: UInt64, eventIndex: UInt64)?
    var grantedQueues: (submission: Int, completion: Int)?
    var volatileWriteCacheEnabled = true
    var storedFeatures = StoredFeatures()
    var outstandingAsyncEvents: [(cid: UInt16, sq: DeviceSubmissionQueue)] = []
    var queuedAsyncEvents: [UInt32] = []
    var anyArmed = false
    /// Commands fetched by the current (or last) round: how deep the queues run.
    var commandsThisRound = 0
    var segments: [DMASegment] = []
    var scratchPage: UnsafeMutableRawBufferPointer
    /// Commands whose backend work is running, by tag (see `StorageCompletion.swift`).
    var commandsInFlight: [InFlightCommand?] = []
    var freeTags: [Int] = []
    /// Operations running on engines, all namespaces together, and the most ever.
    var storageInFlight = 0
    var storageInFlightPeak = 0

    init(
        memory: HostMemory, runtimes: [NamespaceRuntime], wake: WakeSignal?, options: ControllerOptions,
        counters: ControllerCounters, mailbox: TrapMailbox
    ) {
        self.memory = memory
        self.options = options
        self.runtimes = runtimes
        namespaces = runtimes.map(\.namespace)
        self.wake = wake
        self.counters = counters
        self.mailbox = mailbox
        vectors = (0..<options.interruptVectors).map { InterruptVector(number: UInt16($0)) }
        let cap = ControllerCapabilities(
            maximumQueueEntries0: UInt16(options.maximumQueueEntries - 1), contiguousQueuesRequired: true,
            timeout500ms: options.readyTimeout500ms, doorbellStride: options.doorbellStride,
            nvmCommandSet: true, memoryPageSizeMinimum: 0, memoryPageSizeMaximum: 0)
        registers = RegisterFile(capabilities: cap, version: .v1_3)
        submissionQueues = Array(repeating: nil, count: options.maximumIOQueuePairs + 1)
        completionQueues = Array(repeating: nil, count: options.maximumIOQueuePairs + 1)
        segments.reserveCapacity(64)
        scratchPage = .allocate(byteCount: IdentifyController.size, alignment: 64)
    }

    deinit { scratchPage.deallocate() }

    // MARK: Traps

    /// Acts on one register write the host trapped with.
    func handle(_ w: RegisterWrite) {
        if w.offset >= RegisterOffset.doorbellBase {
            handleDoorbell(offset: w.offset, value: UInt32(truncatingIfNeeded: w.value))
            return
        }
        counters.add(.mmioRegisterWrites)
        if w.offset == RegisterOffset.cc {
            let cc = ControllerConfiguration(raw: UInt32(truncatingIfNeeded: w.value))
            let previousShutdown = acceptedShutdownNotification
            acceptedShutdownNotification = cc.shutdownNotification
            if cc.enable && !enabled {
                enable(cc)
            } else if !cc.enable && enabled {
                reset()
            }
            // QEMU's nvme_write_bar: act on SHN going from 00b to non-zero (a CC write
            // repeating it changes nothing); clearing SHN clears SHST.
            if cc.shutdownNotification != 0 && previousShutdown == 0 && enabled {
                shutDown()
            } else if cc.shutdownNotification == 0 && previousShutdown != 0 {
                setStatus { $0.shutdownStatus = 0 }
            }
        }
    }

    private func handleDoorbell(offset: UInt32, value: UInt32) {
        guard let (qid, isCompletion) = RegisterOffset.decodeDoorbell(offset, stride: options.doorbellStride),
            Int(qid) < submissionQueues.count
        else {
            invalidDoorbell(AsynchronousEvent.invalidDoorbellRegister)
            return
        }
        if qid == 0 {
            counters.add(.mmioAdminDoorbellWrites)
        } else {
            if isCompletion { counters.add(.mmioCQHeadDoorbellWrites) } else { counters.add(.mmioSQTailDoorbellWrites) }
        }
        guard enabled else { return }
        if isCompletion {
            guard let cq = completionQueues[Int(qid)] else {
                invalidDoorbell(AsynchronousEvent.invalidDoorbellRegister); return
            }
            guard Int(value) < cq.size else { invalidDoorbell(AsynchronousEvent.invalidDoorbellWriteValue); return }
            cq.head = Int(value)
        } else {
            guard let sq = submissionQueues[Int(qid)] else {
                invalidDoorbell(AsynchronousEvent.invalidDoorbellRegister); return
            }
            guard Int(value) < sq.size else { invalidDoorbell(AsynchronousEvent.invalidDoorbellWriteValue); return }
            sq.tail = Int(value)
        }
    }

    private func invalidDoorbell(_ info: UInt8) {
        counters.add(.invalidDoorbellWrites)
        enqueueAsyncEvent(
            AsynchronousEvent.completionDW0(
                type: AsynchronousEvent.typeErrorStatus, info: info,
                logPage: LogPageIdentifier.errorInformation.rawValue))
    }

    // MARK: Enable, reset, shutdown (§3.5, §3.7.2)

    private func enable(_ cc: ControllerConfiguration) {
        // The register file is shared with host threads (their traps record into
        // it under the mailbox lock): read it under the lock too.
        let (aqa, asq, acq) = mailbox.withLock {
            (registers.adminQueueAttributes, registers.adminSubmissionQueueBase, registers.adminCompletionQueueBase)
        }
        let sqSize = Int(aqa.submissionQueueSize0) + 1
        let cqSize = Int(aqa.completionQueueSize0) + 1
        // QEMU's nvme_start_ctrl checks. A failed enable leaves CSTS.RDY clear and
        // sets CSTS.CFS (QEMU: `csts = NVME_CSTS_FAILED`), so the host gives up at
        // once instead of waiting out CAP.TO.
        guard cc.memoryPageSize == 0, cc.commandSetSelected == 0,
            cc.ioSubmissionQueueEntrySize == 6, cc.ioCompletionQueueEntrySize == 4,
            sqSize >= 2, cqSize >= 2,
            asq % UInt64(HostMemory.pageSize) == 0, acq % UInt64(HostMemory.pageSize) == 0,
            let sqBase = memory.pointer(at: asq, length: sqSize * SubmissionQueueEntry.size),
            let cqBase = memory.pointer(at: acq, length: cqSize * CompletionQueueEntry.size)
        else {
            setStatus {
                $0.ready = false; $0.fatal = true
            }
            return
        }
        let cq = DeviceCompletionQueue(id: 0, base: cqBase, size: cqSize, vector: vectors[0], interruptsEnabled: true)
        let sq = DeviceSubmissionQueue(id: 0, base: sqBase, size: sqSize, completionQueue: cq)
        cq.attachedSubmissionQueues = 1
        completionQueues[0] = cq
        submissionQueues[0] = sq
        activeSubmissionQueueIDs = [0]
        enabled = true
        fatal = false
        setStatus {
            $0.ready = true; $0.fatal = false; $0.shutdownStatus = 0
        }
    }

    /// Controller reset (CC.EN 1 → 0): every queue, pending completion, outstanding
    /// Asynchronous Event Request and the doorbell buffer configuration are dropped;
    /// features return to their defaults.
    func reset() {
        // Drain first: nothing may land in host memory or a queue after this.
        drainStorage(post: false)
        if enabled { counters.add(.resets) }
        enabled = false
        fatal = false
        for i in submissionQueues.indices { submissionQueues[i] = nil }
        for i in completionQueues.indices { completionQueues[i] = nil }
        activeSubmissionQueueIDs = []
        doorbellBuffer = nil
        grantedQueues = nil
        volatileWriteCacheEnabled = true
        storedFeatures = StoredFeatures()
        outstandingAsyncEvents = []
        queuedAsyncEvents = []
        anyArmed = false
        setStatus { $0 = ControllerStatus(raw: 0) }
    }

    /// Normal or abrupt shutdown notification: make writes durable and report
    /// shutdown processing complete (CSTS.SHST = 10b).
    private func shutDown() {
        // Commands in flight complete first (their queues still exist), then
        // everything they wrote is made durable.
        counters.add(.shutdowns)
        drainStorage(post: true)
        for ns in namespaces { _ = try? ns.backend.flush() }
        setStatus { $0.shutdownStatus = 0b10 }
    }

    /// Makes the controller fail (CSTS.CFS = 1) and stop processing commands, as a
    /// device does on an internal error it cannot report in a completion queue.
    func declareFatal() {
        fatal = true
        setStatus { $0.fatal = true }
    }

    private func setStatus(_ change: (inout ControllerStatus) -> Void) {
        mailbox.withLock { change(&registers.status) }
    }

    // MARK: The round

    /// Processes every queue once. Returns whether anything was done.
    func runRound() -> Bool {
        commandsThisRound = 0
        guard enabled, !fatal else { return false }
        if anyArmed { disarm() }
        var worked = false
        var i = 0
        while i < activeSubmissionQueueIDs.count {
            if let sq = submissionQueues[Int(activeSubmissionQueueIDs[i])], processSubmissionQueue(sq) {
                worked = true
            }
            i += 1
        }
        if wake != nil {
            // One hand-over for everything started this round, then whatever has
            // finished (page-cache hits often finish during the hand-over itself).
            commitStorage()
            if storageInFlight > 0, reapStorage(post: true) > 0 { worked = true }
        }
        for cq in activeCompletionQueues {
            if cq.backlogCount > 0, drainBacklog(cq) { worked = true }
            signal(cq)
        }
        return worked
    }

    private func processSubmissionQueue(_ sq: DeviceSubmissionQueue) -> Bool {
        if sq.id != 0, let shadow = sq.shadowDoorbell {
            readShadowTail(sq, shadow)
        }
        guard !sq.isEmpty else { return false }
        let cq = sq.completionQueue
        var budget = options.arbitrationBurst
        var did = false
        while !sq.isEmpty && budget > 0 && enabled && !fatal {
            // Hold back while completions are waiting for room (QEMU limits the
            // requests in flight per queue the same way).
            guard cq.backlogCount < sq.size else { break }
            // Hold back while the command's namespace is at its in-flight bound.
            if wake != nil, sq.id != 0, mustHoldBack(sq) {
                counters.add(.inFlightLimitStalls)
                break
            }
            // `base` covers `size` entries (checked at creation) and head < size.
            let entry = SubmissionQueueEntry(
                bytes: UnsafeRawBufferPointer(
                    start: sq.base + sq.head * SubmissionQueueEntry.size, count: SubmissionQueueEntry.size))
            sq.head += 1
            if sq.head == sq.size { sq.head = 0 }
            budget -= 1
            did = true
            execute(entry, on: sq)
        }
        if did, sq.id != 0, let ei = sq.eventIndex {
            switch options.eventIndexPolicy {
            case .spdk:
                // Keep "never trap" right behind the head as it moves: left where it
                // was, the host would cross it once more than the consumed count of
                // entries were outstanding again, and trap for nothing.
                if !sq.armed { writeNeverEventIndex(ei, head: sq.head, size: sq.size) }
            case .qemu:
                // QEMU's nvme_update_sq_eventidx: EventIdx = the tail consumed, so the
                // host's next submission past it traps.
                ei.storeRelaxed(UInt32(sq.tail))
                counters.add(.eventIndexWrites)
                readShadowTail(sq, sq.shadowDoorbell!)
            }
        }
        signal(cq)
        return did
    }

    /// Loads the shadow tail (acquire: the entries before it are then visible).
    @inline(__always)
    private func readShadowTail(_ sq: DeviceSubmissionQueue, _ shadow: SharedWord) {
        if let t = loadShadowDoorbell(sq, shadow) { sq.tail = t }
    }

    @inline(__always)
    private func readShadowHead(_ cq: DeviceCompletionQueue, _ shadow: SharedWord) {
        guard let h = loadShadowDoorbell(cq, shadow) else { return }
        if h != cq.head, !cq.armed, options.eventIndexPolicy == .spdk, let ei = cq.eventIndex {
            writeNeverEventIndex(ei, head: h, size: cq.size)
        }
        cq.head = h
    }

    /// Loads `q`'s Shadow Doorbell entry (acquire) for ``readShadowTail(_:_:)`` and
    /// ``readShadowHead(_:_:)``: the value when it lies inside the queue; otherwise
    /// `nil`, reporting an Invalid Doorbell Write Value once per bad value (the host
    /// sees one event, not one per round).
    @inline(__always)
    private func loadShadowDoorbell(_ q: DeviceQueue, _ shadow: SharedWord) -> Int? {
        counters.add(.shadowDoorbellReads)
        let value = Int(shadow.loadAcquire())
        if value < q.size {
            q.invalidShadowValue = nil
            return value
        }
        if value != q.invalidShadowValue {
            q.invalidShadowValue = value
            invalidDoorbell(AsynchronousEvent.invalidDoorbellWriteValue)
        }
        return nil
    }

    /// Queues a completion for `sq`'s completion queue and posts what fits.
    func complete(_ sq: DeviceSubmissionQueue, cid: UInt16, status: NVMeStatus, dw0: UInt32 = 0) {
        if !status.isSuccess { counters.add(.commandErrors) }
        let cq = sq.completionQueue
        let entry = CompletionQueueEntry(
            dw0: dw0, submissionQueueHead: UInt16(truncatingIfNeeded: sq.head),
            submissionQueueIdentifier: sq.id, commandIdentifier: cid,
            phase: false, status: status)
        if options.eventIndexPolicy == .qemu { updateCompletionEventIndex(cq) }
        if cq.backlogCount == 0 && hasRoom(cq) {
            cq.post(entry)
            counters.add(.completionsPosted)
        } else {
            cq.backlog.append(entry)
        }
    }

    /// QEMU's nvme_update_cq_eventidx then nvme_update_cq_head, before each post:
    /// EventIdx = the head known, so the host traps once per batch it consumes.
    @inline(__always)
    private func updateCompletionEventIndex(_ cq: DeviceCompletionQueue) {
        guard cq.id != 0, let ei = cq.eventIndex, let shadow = cq.shadowDoorbell else { return }
        ei.storeRelaxed(UInt32(cq.head))
        counters.add(.eventIndexWrites)
        readShadowHead(cq, shadow)
    }

    /// Whether `cq` can take an entry, refreshing the head from the shadow buffer
    /// when it looks full.
    @inline(__always)
    private func hasRoom(_ cq: DeviceCompletionQueue) -> Bool {
        if !cq.isFull { return true }
        if cq.id != 0, let shadow = cq.shadowDoorbell { readShadowHead(cq, shadow) }
        if !cq.isFull { return true }
        counters.add(.completionQueueFullStalls)
        return false
    }

    private func drainBacklog(_ cq: DeviceCompletionQueue) -> Bool {
        var posted = false
        while cq.backlogCount > 0 && hasRoom(cq) {
            cq.post(cq.backlog[cq.backlogStart])
            counters.add(.completionsPosted)
            cq.backlogStart += 1
            posted = true
        }
        if cq.backlogCount == 0 {
            cq.backlog.removeAll(keepingCapacity: true)
            cq.backlogStart = 0
        } else if cq.backlogStart > 1024 && cq.backlogStart * 2 > cq.backlog.count {
            cq.backlog.removeFirst(cq.backlogStart)
            cq.backlogStart = 0
        }
        signal(cq)
        return posted
    }

    /// Raises `cq`'s interrupt if entries were posted since the last one.
    private func signal(_ cq: DeviceCompletionQueue) {
        guard cq.unsignalled > 0 else { return }
        cq.unsignalled = 0
        guard cq.interruptsEnabled else { return }
        if cq.vector.raise() {
            counters.add(.interruptsRaised)
        } else if cq.vector.isMasked {
            counters.add(.interruptsHeld)
        }
    }

    // MARK: EventIdx

    /// "Never trap": one behind the head, a value the host's doorbell cannot cross
    /// without first filling the queue completely, which it never does.
    @inline(__always)
    func writeNeverEventIndex(_ ei: SharedWord, head: Int, size: Int) {
        ei.storeRelaxed(UInt32((head + size - 1) % size))
        counters.add(.eventIndexWrites)
    }

    /// Puts every EventIdx back to "never trap" after the thread woke up.
    private func disarm() {
        anyArmed = false
        // QEMU's policy keeps EventIdx at what was consumed, awake or not.
        let never = options.eventIndexPolicy == .spdk
        for qid in activeSubmissionQueueIDs where qid != 0 {
            guard let sq = submissionQueues[Int(qid)], sq.armed, let ei = sq.eventIndex else { continue }
            sq.armed = false
            if never { writeNeverEventIndex(ei, head: sq.head, size: sq.size) }
        }
        for cq in activeCompletionQueues where cq.armed {
            cq.armed = false
            if never, let ei = cq.eventIndex { writeNeverEventIndex(ei, head: cq.head, size: cq.size) }
        }
    }

    /// Before parking: asks the host to trap on its next doorbell write — EventIdx
    /// of each drained submission queue = the tail consumed, of each full completion
    /// queue = the head known — then a full fence, then re-reads the shadow values.
    /// Returns `true` when the host moved one meanwhile (keep going, do not park):
    /// without this re-read a submission between the last read and the EventIdx
    /// store would be lost (the race QEMU and SPDK both had to fix).
    func armForPark() -> Bool {
        guard enabled, !fatal, doorbellBuffer != nil else { return false }
        for qid in activeSubmissionQueueIDs where qid != 0 {
            guard let sq = submissionQueues[Int(qid)], let ei = sq.eventIndex, sq.isEmpty else { continue }
            ei.storeRelaxed(UInt32(sq.tail))
            counters.add(.eventIndexWrites)
            sq.armed = true
            anyArmed = true
        }
        for cq in activeCompletionQueues where cq.id != 0 && cq.backlogCount > 0 {
            guard let ei = cq.eventIndex else { continue }
            ei.storeRelaxed(UInt32(cq.head))
            counters.add(.eventIndexWrites)
            cq.armed = true
            anyArmed = true
        }
        MemoryFence.full()
        for qid in activeSubmissionQueueIDs where qid != 0 {
            guard let sq = submissionQueues[Int(qid)], sq.armed, let shadow = sq.shadowDoorbell else { continue }
            counters.add(.shadowDoorbellReads)
            if Int(shadow.loadAcquire()) != sq.tail { return true }
        }
        for cq in activeCompletionQueues where cq.armed {
            guard let shadow = cq.shadowDoorbell else { continue }
            counters.add(.shadowDoorbellReads)
            if Int(shadow.loadAcquire()) != cq.head { return true }
        }
        return false
    }

    // MARK: Asynchronous events (§5.2)

    func enqueueAsyncEvent(_ dw0: UInt32) {
        guard enabled else { return }
        if queuedAsyncEvents.count < 16 { queuedAsyncEvents.append(dw0) }
        deliverAsyncEvents()
    }

    func deliverAsyncEvents() {
        while !queuedAsyncEvents.isEmpty, !outstandingAsyncEvents.isEmpty {
            let event = queuedAsyncEvents.removeFirst()
            let (cid, sq) = outstandingAsyncEvents.removeFirst()
            complete(sq, cid: cid, status: .success, dw0: event)
        }
    }
}
