import ConcurrencyHelpers
import DMA
import Foundation
import NVMe
import PCIe

/// The host driver: brings an NVMe controller up as Linux's nvme-pci does
/// (`nvme_reset_work`), owns the admin queue and the I/O ``QueuePair``s, and resets
/// the controller when asked to or when it reports a fatal status.
///
/// It sees what a guest's driver sees: a ``PCIFunction`` (BAR0 reads and writes,
/// MSI-X messages to handlers it programs) and the host memory it owns and hands
/// to the device for DMA. Nothing of the device's internals.
///
/// Bring-up (README, "The data path"): read CAP; CC.EN = 0 and wait for CSTS.RDY = 0; program
/// AQA/ASQ/ACQ; CC.EN = 1 and wait for RDY; Identify Controller; Identify Active
/// Namespace List and each Namespace; Set Features Number of Queues; Create I/O CQ
/// and SQ per pair; then Doorbell Buffer Config when OACS bit 8 is set.
public final class NVMeDriver: @unchecked Sendable {
    public let function: any PCIFunction
    public let memory: HostMemory
    public let options: DriverOptions

    /// What bring-up learned; ``reset()`` learns it again, so readers on other
    /// threads take it under a lock.
    private struct Learned {
        var identify = IdentifyController()
        var namespaces: [NamespaceInfo] = []
        var limits = TransferLimits(mdts: 0)
        var shadowDoorbellsEnabled = false
        var warnings: [String] = []
    }
    private let learned = Locked(Learned())

    /// Identify Controller, as of the last bring-up.
    public var identify: IdentifyController { learned.withLock { $0.identify } }
    /// The active namespaces, as of the last bring-up.
    public var namespaces: [NamespaceInfo] { learned.withLock { $0.namespaces } }
    public var limits: TransferLimits { learned.withLock { $0.limits } }
    /// Whether the doorbell buffer is configured.
    public var shadowDoorbellsEnabled: Bool { learned.withLock { $0.shadowDoorbellsEnabled } }
    /// What went wrong but was worked around (a refused Doorbell Buffer Config),
    /// one line each, oldest first, as Linux's `dev_warn`s.
    public var warnings: [String] { learned.withLock { $0.warnings } }
    /// Created by the first ``start()`` and never changed after (a reset re-creates
    /// the same pairs on the device).
    public private(set) var queuePairs: [QueuePair] = []

    private var admin: QueuePair?
    private let adminLock = ConditionMutex()
    private let adminEvent = ConditionMutex()
    private var adminInterrupts = 0
    private var interruptThreads: [InterruptThread] = []
    private var doorbellPages: (shadow: UInt64, eventIndex: UInt64)?
    private let lifecycle = ConditionMutex()
    private var started = false
    private var stride: UInt8 = 0

    /// - Parameters:
    ///   - function: the device, as a PCI function.
    ///   - memory: the host memory the device was given for DMA; queues, PRP lists,
    ///     data and the doorbell buffer pages come from it.
    public init(function: any PCIFunction, memory: HostMemory, options: DriverOptions = DriverOptions()) {
        self.function = function
        self.memory = memory
        self.options = options
    }

    deinit {
        for t in interruptThreads { t.stop() }
        freeDoorbellPages()
    }

    // MARK: Bring-up

    /// Brings the controller up and creates the I/O queue pairs.
    public func start() throws(NVMeError) {
        try lifecycle.withLock { () throws(NVMeError) in
            precondition(!started, "start() called twice")
            try bringUp(firstTime: true)
            started = true
        }
    }

    private func bringUp(firstTime: Bool) throws(NVMeError) {
        let cap = ControllerCapabilities(raw: function.read64(bar0: RegisterOffset.cap))
        stride = cap.doorbellStride
        let timeout = max(Int(cap.timeout500ms) * 500, 500)
        guard cap.nvmCommandSet, cap.memoryPageSizeMinimum == 0 else {
            throw NVMeError(
                .invalidRequest(
                    "controller lacks the NVM command set or 4 KiB pages (CAP 0x\(String(cap.raw, radix: 16)))"),
                operation: "read CAP")
        }
        if ControllerConfiguration(raw: function.read32(bar0: RegisterOffset.cc)).enable {
            function.write32(bar0: RegisterOffset.cc, 0)
        }
        try waitReady(false, timeoutMilliseconds: timeout)

        // Admin queue.
        let adminDepth = min(options.adminQueueDepth, 4096, Int(cap.maximumQueueEntries0) + 1)
        let adminQueue: QueuePair
        if let a = admin {
            adminQueue = a
        } else {
            adminQueue = try QueuePair(
                id: 0, depth: adminDepth, function: function, memory: memory,
                vector: 0, namespaces: [], limits: TransferLimits(mdts: 0))
            admin = adminQueue
            let line = adminQueue.interrupt
            function.connectInterrupt(0) { [weak self] in if line.message() { self?.adminInterrupt() } }
        }
        adminQueue.activate(shadow: nil)
        function.write32(
            bar0: RegisterOffset.aqa,
            AdminQueueAttributes(
                submissionQueueSize0: UInt16(adminDepth - 1), completionQueueSize0: UInt16(adminDepth - 1)
            ).raw)
        function.write64(bar0: RegisterOffset.asq, adminQueue.sq.address)
        function.write64(bar0: RegisterOffset.acq, adminQueue.cq.address)
        function.write32(
            bar0: RegisterOffset.cc,
            ControllerConfiguration(
                enable: true, memoryPageSize: 0, ioSubmissionQueueEntrySize: 6, ioCompletionQueueEntrySize: 4
            ).raw)
        try waitReady(true, timeoutMilliseconds: timeout)

        // Identify.
        let idBuffer = try dmaBuffer(IdentifyController.size, "Identify")
        _ = try adminCommand(
            SubmissionQueueEntry(opcode: AdminOpcode.identify.rawValue, cdw10: UInt32(IdentifyCNS.controller.rawValue)),
            data: QueuePair.DataPages(buffer: idBuffer, first: 0, count: 1), operation: "Identify Controller")
        let identify = IdentifyController(decoding: idBuffer.bytes())
        let limits = TransferLimits(mdts: UInt8(truncatingIfNeeded: identify[.mdts]))
        _ = try adminCommand(
            SubmissionQueueEntry(
                opcode: AdminOpcode.identify.rawValue, namespaceIdentifier: 0,
                cdw10: UInt32(IdentifyCNS.activeNamespaceList.rawValue)),
            data: QueuePair.DataPages(buffer: idBuffer, first: 0, count: 1), operation: "Identify Active Namespace List"
        )
        let list = idBuffer.bytes()
        var nsids: [UInt32] = []
        for i in Swift.stride(from: 0, to: list.count, by: 4) {
            let id = list.get32(i)
            if id == 0 { break }
            nsids.append(id)
        }
        var infos: [NamespaceInfo] = []
        for nsid in nsids {
            _ = try adminCommand(
                SubmissionQueueEntry(
                    opcode: AdminOpcode.identify.rawValue, namespaceIdentifier: nsid,
                    cdw10: UInt32(IdentifyCNS.namespace.rawValue)),
                data: QueuePair.DataPages(buffer: idBuffer, first: 0, count: 1), operation: "Identify Namespace \(nsid)"
            )
            var info = NamespaceInfo(id: nsid, identify: IdentifyNamespace(decoding: idBuffer.bytes()))
            // CNS 08h (NVMe 2.0) for Rotational Media; a controller without it
            // answers Invalid Field and the namespace counts as solid state (Linux
            // asks the same way and treats a failure alike).
            if let cqe = try? adminCommand(
                SubmissionQueueEntry(
                    opcode: AdminOpcode.identify.rawValue, namespaceIdentifier: nsid,
                    cdw10: UInt32(IdentifyCNS.namespaceIndependent.rawValue)),
                data: QueuePair.DataPages(buffer: idBuffer, first: 0, count: 1),
                operation: "Identify Namespace \(nsid) (command set independent)"),
                cqe.status.isSuccess
            {
                info.isRotational = IdentifyNamespaceIndependent(decoding: idBuffer.bytes()).rotationalMedia
            }
            infos.append(info)
        }
        let namespaces = infos
        learned.withLock {
            $0.identify = identify
            $0.limits = limits
            $0.namespaces = namespaces
        }

        // Number of Queues: 0-based counts in, granted 0-based counts in DW0.
        let wanted = firstTime ? max(1, options.ioQueuePairs) : queuePairs.count
        let nq = try adminCommand(
            SubmissionQueueEntry(
                opcode: AdminOpcode.setFeatures.rawValue, cdw10: UInt32(FeatureIdentifier.numberOfQueues.rawValue),
                cdw11: UInt32(wanted - 1) << 16 | UInt32(wanted - 1)), operation: "Set Features Number of Queues")
        let granted = min(wanted, Int(nq.dw0 & 0xFFFF) + 1, Int(nq.dw0 >> 16) + 1)

        // I/O queue pairs.
        let depth = min(max(2, options.queueDepth), Int(cap.maximumQueueEntries0) + 1)
        if firstTime {
            for i in 1...granted {
                let qp = try QueuePair(
                    id: UInt16(i), depth: depth, function: function, memory: memory,
                    vector: i, namespaces: namespaces, limits: limits)
                let line = qp.interrupt
                switch options.interrupts(i - 1) {
                case .dedicatedThread:
                    let thread = InterruptThread(name: "nvme-irq-\(i)") { [unowned qp] in qp.processCompletions() }
                    interruptThreads.append(thread)
                    function.connectInterrupt(i) { if line.message() { thread.fire() } }
                case .custom(let deliver):
                    function.connectInterrupt(i) { [unowned qp] in if line.message() { deliver(qp) } }
                case .polled:
                    break
                }
                queuePairs.append(qp)
            }
        } else if granted < queuePairs.count {
            throw NVMeError(
                .invalidRequest("controller granted \(granted) queue pairs after reset, \(queuePairs.count) needed"),
                operation: "Set Features Number of Queues")
        }
        for qp in queuePairs {
            _ = try adminCommand(
                SubmissionQueueEntry(
                    opcode: AdminOpcode.createIOCompletionQueue.rawValue, prp1: qp.cq.address,
                    cdw10: UInt32(qp.depth - 1) << 16 | UInt32(qp.id),
                    cdw11: UInt32(qp.interrupt.vector) << 16 | 0b11),
                operation: "\(AdminOpcode.createIOCompletionQueue) \(qp.id)")
            _ = try adminCommand(
                SubmissionQueueEntry(
                    opcode: AdminOpcode.createIOSubmissionQueue.rawValue, prp1: qp.sq.address,
                    cdw10: UInt32(qp.depth - 1) << 16 | UInt32(qp.id),
                    cdw11: UInt32(qp.id) << 16 | 0b1), operation: "\(AdminOpcode.createIOSubmissionQueue) \(qp.id)")
        }

        // Doorbell Buffer Config, after the queues exist (the controller copies their
        // current tail and head into the shadow page). Where the controller refuses
        // it, the driver warns and carries on with MMIO doorbells, as Linux's
        // nvme_dbbuf_set does (dev_warn, free the buffers).
        learned.withLock { $0.shadowDoorbellsEnabled = false }
        var shadows: [(sq: (SharedWord, SharedWord), cq: (SharedWord, SharedWord))]?
        if options.useShadowDoorbells && identify.supportsDoorbellBufferConfig {
            do {
                shadows = try configureDoorbellBuffer()
                learned.withLock { $0.shadowDoorbellsEnabled = true }
            } catch {
                freeDoorbellPages()
                learned.withLock {
                    $0.warnings.append("Doorbell Buffer Config failed (\(error)); using MMIO doorbells")
                }
            }
        }

        // Only now do the pairs go live and dispatch what waited through a reset. Live
        // any earlier, a submission between Doorbell Buffer Config and the switch to
        // the shadow page would ring MMIO only, and the controller — which from then
        // on takes I/O tails from the shadow page — would lose it (a stream stalled).
        for (i, qp) in queuePairs.enumerated() {
            qp.activate(shadow: shadows?[i])
        }
    }

    /// Allocates (first time) and clears the two pages, sends Doorbell Buffer
    /// Config, and returns each pair's Shadow Doorbell and EventIdx entries.
    private func configureDoorbellBuffer() throws(NVMeError) -> [(
        sq: (SharedWord, SharedWord), cq: (SharedWord, SharedWord)
    )] {
        if doorbellPages == nil {
            guard let s = memory.allocateContiguous(bytes: HostMemory.pageSize) else {
                throw NVMeError(.outOfDMAMemory(bytes: 2 * HostMemory.pageSize), operation: "Doorbell Buffer Config")
            }
            guard let e = memory.allocateContiguous(bytes: HostMemory.pageSize) else {
                memory.freeContiguous(s, bytes: HostMemory.pageSize)
                throw NVMeError(.outOfDMAMemory(bytes: 2 * HostMemory.pageSize), operation: "Doorbell Buffer Config")
            }
            doorbellPages = (s, e)
        }
        let pages = doorbellPages!
        memory.pointer(at: pages.shadow, length: HostMemory.pageSize)!.initializeMemory(
            as: UInt8.self, repeating: 0, count: HostMemory.pageSize)
        memory.pointer(at: pages.eventIndex, length: HostMemory.pageSize)!.initializeMemory(
            as: UInt8.self, repeating: 0, count: HostMemory.pageSize)
        _ = try adminCommand(
            SubmissionQueueEntry(
                opcode: AdminOpcode.doorbellBufferConfig.rawValue,
                prp1: pages.shadow, prp2: pages.eventIndex),
            operation: "Doorbell Buffer Config")
        var entries: [(sq: (SharedWord, SharedWord), cq: (SharedWord, SharedWord))] = []
        for qp in queuePairs {
            entries.append(
                (sq: try shadowEntry(qp.id, completion: false), cq: try shadowEntry(qp.id, completion: true)))
        }
        return entries
    }

    private func freeDoorbellPages() {
        guard let pages = doorbellPages else { return }
        memory.freeContiguous(pages.shadow, bytes: HostMemory.pageSize)
        memory.freeContiguous(pages.eventIndex, bytes: HostMemory.pageSize)
        doorbellPages = nil
    }

    private func shadowEntry(_ qid: UInt16, completion: Bool) throws(NVMeError) -> (SharedWord, SharedWord) {
        let pages = doorbellPages!
        let offset = UInt64((2 * Int(qid) + (completion ? 1 : 0)) * (4 << Int(stride)))
        guard offset + 4 <= UInt64(HostMemory.pageSize), let s = memory.word(at: pages.shadow + offset),
            let e = memory.word(at: pages.eventIndex + offset)
        else {
            throw NVMeError(
                .invalidRequest("queue \(qid) has no entry in a one-page doorbell buffer"),
                operation: "Doorbell Buffer Config")
        }
        return (s, e)
    }

    private func dmaBuffer(_ bytes: Int, _ operation: String) throws(NVMeError) -> DMABuffer {
        guard let b = DMABuffer(memory: memory, byteCount: bytes) else {
            throw NVMeError(.outOfDMAMemory(bytes: bytes), operation: operation)
        }
        return b
    }

    /// Waits for CSTS.RDY to equal `ready` (CAP.TO bounds it), failing early on CSTS.CFS.
    private func waitReady(_ ready: Bool, timeoutMilliseconds: Int) throws(NVMeError) {
        let deadline = MonotonicClock.deadline(afterMilliseconds: timeoutMilliseconds)
        while true {
            options.whileWaiting?()
            let csts = ControllerStatus(raw: function.read32(bar0: RegisterOffset.csts))
            if csts.ready == ready { return }
            if ready && csts.fatal { throw NVMeError(.controllerFatal, operation: "enable") }
            if MonotonicClock.nanoseconds() > deadline {
                throw NVMeError(
                    .timeout("CSTS.RDY did not become \(ready ? 1 : 0) within \(timeoutMilliseconds) ms (CAP.TO)"),
                    operation: ready ? "enable" : "disable")
            }
            // Linux polls CSTS with msleep(); a short sleep keeps this bounded wait cheap.
            if options.whileWaiting == nil { usleep(20) }
        }
    }

    // MARK: Admin commands

    private func adminInterrupt() {
        adminEvent.withLock {
            adminInterrupts &+= 1
            adminEvent.broadcast()
        }
    }

    /// Runs one admin command and waits for its completion. A non-success status
    /// throws ``NVMeError/Kind/status(_:)``.
    @discardableResult
    public func adminCommand(
        _ entry: SubmissionQueueEntry, data: QueuePair.DataPages? = nil,
        operation: String? = nil
    ) throws(NVMeError) -> CompletionQueueEntry {
        let name =
            operation
            ?? AdminOpcode(rawValue: entry.opcode).description
        guard let admin else { throw NVMeError(.aborted(reason: "driver not started"), operation: name) }
        adminLock.lock()
        defer { adminLock.unlock() }
        let box = CompletionBox()
        admin.submit(entry, data: data) { box.set($0) }
        let deadline = MonotonicClock.deadline(afterMilliseconds: options.adminTimeoutMilliseconds)
        while true {
            // Read the interrupt count, then reap (which acknowledges the vector): an
            // entry posted after the acknowledgement raises a new interrupt, so the
            // wait below cannot miss it.
            var seen = adminEvent.withLock { adminInterrupts }
            admin.processCompletions()
            if box.get() != nil { break }
            if let step = options.whileWaiting {
                // A device driven by the caller (tests): advance it instead of waiting.
                step()
                if MonotonicClock.nanoseconds() > deadline { break }
                continue
            }
            let fired: Bool = adminEvent.withLock {
                while adminInterrupts == seen {
                    if !adminEvent.wait(until: deadline) { return false }
                }
                seen = adminInterrupts
                return true
            }
            if !fired {
                admin.processCompletions()
                break
            }
        }
        guard let cqe = box.get() else {
            let csts = ControllerStatus(raw: function.read32(bar0: RegisterOffset.csts))
            if csts.fatal { throw NVMeError(.controllerFatal, operation: name) }
            throw NVMeError(.timeout("no completion within \(options.adminTimeoutMilliseconds) ms"), operation: name)
        }
        guard cqe.status.isSuccess else { throw NVMeError(.status(cqe.status), operation: name) }
        return cqe
    }

    /// Submits an admin command without waiting (commands that stay outstanding,
    /// such as Asynchronous Event Requests). `completion` runs when a later admin
    /// command's wait, or ``pollAdminCompletions()``, reaps it.
    public func submitAdmin(
        _ entry: SubmissionQueueEntry, data: QueuePair.DataPages? = nil,
        completion: @escaping QueuePair.Completion
    ) {
        guard let admin else {
            return completion(
                CompletionQueueEntry(
                    submissionQueueHead: 0, submissionQueueIdentifier: 0, commandIdentifier: 0xFFFF,
                    phase: false, status: .commandAbortedSQDeletion))
        }
        admin.submit(entry, data: data, completion: completion)
    }

    /// Reaps the admin completion queue now; returns how many entries it found.
    @discardableResult
    public func pollAdminCompletions() -> Int {
        options.whileWaiting?()
        return admin?.processCompletions() ?? 0
    }

    /// Bus addresses of the Shadow Doorbell and EventIdx pages while configured.
    public var doorbellBufferAddresses: (shadow: UInt64, eventIndex: UInt64)? {
        lifecycle.withLock { shadowDoorbellsEnabled ? doorbellPages : nil }
    }

    // MARK: Reset and shutdown

    /// Controller-level reset as Linux's `nvme_reset_ctrl` does it: disable the
    /// controller (CC.EN = 0, wait RDY = 0), reap what it had posted, put commands
    /// that were still outstanding back in their queues (or fail them after
    /// ``DriverOptions/maximumRetries``), bring the controller up again and
    /// resubmit. Returns how many commands were requeued.
    @discardableResult
    public func reset() throws(NVMeError) -> Int {
        try lifecycle.withLock { () throws(NVMeError) -> Int in
            guard started else { throw NVMeError(.aborted(reason: "driver not started"), operation: "reset") }
            function.write32(bar0: RegisterOffset.cc, 0)
            let cap = ControllerCapabilities(raw: function.read64(bar0: RegisterOffset.cap))
            try waitReady(false, timeoutMilliseconds: max(Int(cap.timeout500ms) * 500, 500))
            var requeued = 0
            for qp in queuePairs {
                qp.processCompletions()
                requeued += qp.deactivate(maxRetries: options.maximumRetries, failure: .commandAbortedSQDeletion)
            }
            admin?.processCompletions()
            _ = admin?.deactivate(maxRetries: 0, failure: .commandAbortedSQDeletion)
            try bringUp(firstTime: false)
            return requeued
        }
    }

    /// Whether the controller reports a fatal status (CSTS.CFS) — what Linux's
    /// timeout handler checks before resetting.
    public var controllerFatal: Bool {
        ControllerStatus(raw: function.read32(bar0: RegisterOffset.csts)).fatal
    }

    /// Orderly shutdown: fails what is still waiting, sends the normal shutdown
    /// notification (CC.SHN = 01b) and waits for CSTS.SHST = 10b, then stops the
    /// interrupt threads. The controller itself keeps running until stopped.
    public func shutdown() {
        lifecycle.withLock {
            guard started else { return }
            started = false
            var cc = ControllerConfiguration(raw: function.read32(bar0: RegisterOffset.cc))
            cc.raw = (cc.raw & ~(0x3 << 14)) | (1 << 14)
            function.write32(bar0: RegisterOffset.cc, cc.raw)
            let deadline = MonotonicClock.deadline(afterMilliseconds: options.adminTimeoutMilliseconds)
            while ControllerStatus(raw: function.read32(bar0: RegisterOffset.csts)).shutdownStatus != 0b10
                && MonotonicClock.nanoseconds() < deadline
            {
                if let step = options.whileWaiting { step() } else { usleep(20) }
            }
            for qp in queuePairs { qp.failAll(.commandAbortedSQDeletion) }
            admin?.failAll(.commandAbortedSQDeletion)
            for t in interruptThreads { t.stop() }
            interruptThreads = []
            for qp in queuePairs { function.disconnectInterrupt(qp.interrupt.vector) }
            function.disconnectInterrupt(0)
        }
    }

    /// The sum of every I/O queue pair's counters.
    public var statistics: HostStatistics {
        queuePairs.reduce(HostStatistics()) { $0 + $1.counters.snapshot() }
    }
}

/// One completion, handed from the reaping thread to a waiter.
final class CompletionBox: @unchecked Sendable {
    private let lock = ConditionMutex()
    private var value: CompletionQueueEntry?
    func set(_ v: CompletionQueueEntry) { lock.withLock { value = v } }
    func get() -> CompletionQueueEntry? { lock.withLock { value } }
}
