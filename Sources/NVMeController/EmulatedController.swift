import BlockBackends
import ConcurrencyHelpers
import DMA
import Foundation
import NVMe
import PCIe

#if canImport(Glibc)
import Glibc
#endif

/// An emulated NVMe controller on PCIe (NVMe Base Specification 2.0; NVMe 1.3
/// Doorbell Buffer Config, §5.7), with its namespaces, running on its own thread
/// as QEMU's iothread runs `hw/nvme`.
///
/// The host reaches it only as a ``PCIFunction``: BAR0 reads and writes —
/// registers, doorbells and the MSI-X table — and the MSI-X messages it programs,
/// plus the memory the host handed it at creation (``HostMemory``, the guest's
/// RAM, which the device reads and writes by DMA). A BAR write is a trap: the
/// writer waits until the controller thread has taken it. The MSI-X table lies
/// after the doorbells, at the next 4 KiB boundary (as in QEMU's `hw/nvme`).
///
/// In **stepped** mode there is no thread: traps are only recorded and the caller
/// drives the device with ``step()`` and ``runUntilIdle()`` — for tests that need
/// to see exactly when the host traps.
public final class EmulatedController: PCIFunction, @unchecked Sendable {
    public let memory: HostMemory
    public let msix: MSIXCapability
    public let options: ControllerOptions
    public let namespaces: [Namespace]
    public let counters = ControllerCounters()
    public let isStepped: Bool

    /// How each namespace's backend runs ("inline", "io_uring", "threads"), in
    /// namespace order.
    public let storageEngines: [String]
    /// Why a namespace runs on something other than what it asked for (io_uring
    /// refused, say), one line each, for the log.
    public let storageNotes: [String]

    private let mailbox: TrapMailbox
    /// The MSI-X vectors (immutable objects; their state is atomic): reachable from
    /// host threads, unlike the core.
    private let vectors: [InterruptVector]
    /// Confined to the controller thread (or the stepping caller): the invariant
    /// that makes this class's `@unchecked Sendable` sound. Host threads reach it
    /// only through the mailbox.
    private let core: ControllerCore
    private var thread: Thread?
    private let finished = ConditionMutex()
    private var running = false
    private var steppedStopped = false
    private var traps: [RegisterWrite] = []

    /// - Parameters:
    ///   - namespaces: NSIDs must be 1, 2, ... in order.
    ///   - stepped: no controller thread; see ``step()``.
    public init(
        memory: HostMemory, namespaces: [Namespace], options: ControllerOptions = ControllerOptions(),
        stepped: Bool = false
    ) throws(ControllerConfigurationError) {
        try options.validate()
        for (i, ns) in namespaces.enumerated() where ns.id != UInt32(i + 1) {
            throw .invalid(
                "namespace ids must be 1...\(namespaces.count) in order; found \(ns.id) at position \(i + 1)")
        }
        guard !namespaces.isEmpty else { throw .invalid("a controller needs at least one namespace") }
        self.memory = memory
        self.options = options
        self.namespaces = namespaces
        isStepped = stepped
        // Doorbells of every possible queue, then the table on the next 4 KiB boundary
        // and the Pending Bit Array right after it.
        let doorbellEnd =
            Int(RegisterOffset.doorbellBase) + 2 * (options.maximumIOQueuePairs + 1)
            * (4 << Int(options.doorbellStride))
        let table = (doorbellEnd + 4095) / 4096 * 4096
        msix = MSIXCapability(vectors: options.interruptVectors, tableOffset: UInt32(table))
        var wake: WakeSignal? = nil
        if namespaces.contains(where: { $0.io != .inline }) {
            do {
                wake = try WakeSignal()
            } catch {
                throw .invalid("cannot create the controller's eventfd: \(error)")
            }
        }
        var runtimes: [NamespaceRuntime] = []
        var notes: [String] = []
        for ns in namespaces {
            guard let wake else {
                runtimes.append(NamespaceRuntime(namespace: ns, engine: nil))
                continue
            }
            let (engine, note) = StorageEngines.make(
                for: ns.backend, io: ns.io, capacity: ns.maximumInFlight, wake: wake)
            runtimes.append(NamespaceRuntime(namespace: ns, engine: engine))
            if let note { notes.append("namespace \(ns.id): \(note)") }
        }
        storageEngines = runtimes.map { $0.engine?.name ?? "inline" }
        storageNotes = notes
        mailbox = TrapMailbox(handsOff: !stepped, wake: wake)
        core = ControllerCore(
            memory: memory, runtimes: runtimes, wake: wake, options: options, counters: counters, mailbox: mailbox)
        vectors = core.vectors
        traps.reserveCapacity(64)
        if !stepped { start() }
    }

    deinit { stop() }

    private func start() {
        running = true
        let t = Thread { [self] in run() }
        t.name = "nvme-controller"
        t.stackSize = 1 << 20
        thread = t
        t.start()
    }

    /// Stops the controller thread (the device is unplugged). Pending traps are
    /// released; later MMIO writes do nothing. Idempotent.
    public func stop() {
        if isStepped {
            // No thread to end; the stepping caller owns the core. Backend work
            // still running is drained and the engines' workers stopped.
            if finished.withLock({ !steppedStopped }) {
                finished.withLock { steppedStopped = true }
                core.closeStorage()
            }
            return
        }
        guard finished.withLock({ running }) else { return }
        mailbox.close()
        finished.withLock {
            while running { finished.wait() }
        }
    }

    // MARK: BAR0 (PCIFunction)

    /// A 32-bit BAR0 write: the trap. MSI-X table writes take effect when recorded.
    public func write32(bar0 offset: UInt32, _ value: UInt32) {
        let w = RegisterWrite(offset: offset, value: UInt64(value), width: 4)
        guard msix.contains(offset) else { return trap(w) }
        var release: InterruptVector? = nil
        mailbox.trap(w) {
            if let n = msix.vector(atVectorControl: offset), vectors[n].setMask(value & MSIXTable.maskBit != 0) {
                release = vectors[n]
            }
        }
        // Unmasking sends the message the mask held (§6.8.2.9), outside the lock.
        release?.send()
    }

    /// A 64-bit BAR0 write (ASQ, ACQ): the trap.
    public func write64(bar0 offset: UInt32, _ value: UInt64) {
        trap(RegisterWrite(offset: offset, value: value, width: 8))
    }

    private func trap(_ w: RegisterWrite) {
        mailbox.trap(w) {
            core.registers.record(w)
        }
    }

    public func read32(bar0 offset: UInt32) -> UInt32 {
        counters.add(.mmioReads)
        if msix.contains(offset) { return msixRead(offset) }
        return UInt32(truncatingIfNeeded: mailbox.withLock { core.registers.read(offset: offset, width: 4) })
    }

    public func read64(bar0 offset: UInt32) -> UInt64 {
        counters.add(.mmioReads)
        if msix.contains(offset) { return UInt64(msixRead(offset)) | UInt64(msixRead(offset + 4)) << 32 }
        return mailbox.withLock { core.registers.read(offset: offset, width: 8) }
    }

    /// Vector Control words (the Mask Bit) and the Pending Bit Array; the message
    /// address and data of an entry read as 0 (the message is the handler).
    private func msixRead(_ offset: UInt32) -> UInt32 {
        if let n = msix.vector(atVectorControl: offset) { return vectors[n].isMasked ? MSIXTable.maskBit : 0 }
        guard offset >= msix.pendingBitArrayOffset else { return 0 }
        let first = Int(offset - msix.pendingBitArrayOffset) * 8
        var bits: UInt32 = 0
        for i in 0..<32 where first + i < core.vectors.count && vectors[first + i].isPending { bits |= 1 << UInt32(i) }
        return bits
    }

    public func connectInterrupt(_ vector: Int, to handler: @escaping @Sendable () -> Void) {
        vectors[vector].connect(handler)
    }

    public func disconnectInterrupt(_ vector: Int) {
        vectors[vector].disconnect()
    }

    /// Test hook for fault handling: the controller sets CSTS.CFS and stops
    /// processing commands until the host resets it (CC.EN 1 → 0 → 1).
    public func injectFatalError() {
        // CSTS.CFS is visible as soon as this returns (it is recorded with the trap,
        // as register writes are); the controller stops processing when it takes it.
        mailbox.trap(RegisterWrite(offset: Self.fatalErrorPseudoRegister, value: 1, width: 4)) {
            core.registers.status.fatal = true
        }
    }

    /// Not a register: an offset no host uses, carrying ``injectFatalError()``
    /// through the mailbox so the controller thread applies it in order.
    static let fatalErrorPseudoRegister: UInt32 = 0xF00

    // MARK: Stepped mode

    /// Stepped mode: takes recorded traps and runs one round. Returns whether
    /// anything happened.
    @discardableResult
    public func step() -> Bool {
        precondition(isStepped, "step() is for stepped controllers")
        return turn()
    }

    /// Stepped mode: steps until nothing is left to do, then prepares to park as
    /// the thread would (EventIdx armed, full fence, shadow re-read). Returns
    /// `true` if it would park now, `false` if the re-read found new work (call
    /// again). Bounded by `maximumSteps`.
    @discardableResult
    public func runUntilIdle(maximumSteps: Int = 1_000_000) -> Bool {
        precondition(isStepped, "runUntilIdle() is for stepped controllers")
        var steps = 0
        while steps < maximumSteps {
            while turn() && steps < maximumSteps { steps += 1 }
            if mailbox.hasPending { continue }
            if core.storageInFlight > 0 {
                // Idle means nothing in flight either: wait for the storage.
                core.wake?.drain()
                if !core.hasStorageCompletions { core.wake?.wait(timeoutMilliseconds: 1000) }
                steps += 1
                continue
            }
            if core.armForPark() { steps += 1; continue }
            return true
        }
        return false
    }

    /// Stepped mode: the controller's consumed head and known tail of submission
    /// queue `qid`, or `nil` when it does not exist (tests of the EventIdx protocol).
    public func submissionQueueState(_ qid: UInt16) -> (head: Int, tail: Int)? {
        precondition(isStepped, "queue state is only stable in stepped mode")
        guard Int(qid) < core.submissionQueues.count, let sq = core.submissionQueues[Int(qid)] else { return nil }
        return (sq.head, sq.tail)
    }

    /// Stepped mode: backend operations in flight on the namespaces' engines.
    public var storageInFlight: Int {
        precondition(isStepped, "queue state is only stable in stepped mode")
        return core.storageInFlight
    }

    /// Stepped mode: completions held for room in completion queue `qid`.
    public func heldCompletions(_ qid: UInt16) -> Int? {
        precondition(isStepped, "queue state is only stable in stepped mode")
        guard Int(qid) < core.completionQueues.count, let cq = core.completionQueues[Int(qid)] else { return nil }
        return cq.backlogCount
    }

    // MARK: The controller thread

    private func turn() -> Bool {
        mailbox.take(into: &traps)
        let hadTraps = !traps.isEmpty
        if hadTraps {
            for w in traps {
                if w.offset == Self.fatalErrorPseudoRegister {
                    core.declareFatal()
                } else if msix.contains(w.offset) {
                    // Applied when recorded; the device only counts it.
                    counters.add(.mmioMSIXWrites)
                } else {
                    core.handle(w)
                }
            }
            traps.removeAll(keepingCapacity: true)
        }
        return core.runRound() || hadTraps
    }

    private func run() {
        var lastWork = MonotonicClock.nanoseconds()
        var polling = false
        // Commands per productive round, exponentially averaged, in 1/16ths.
        var depth16 = 16
        while mailbox.isOpenFast {
            if turn() {
                if polling { counters.add(.pollHits) }
                polling = false
                if core.commandsThisRound > 0 {
                    depth16 += (core.commandsThisRound * 16 - depth16) / 8
                }
                lastWork = MonotonicClock.nanoseconds()
                continue
            }
            var window = depth16 <= options.pollBatchLimit * 16 ? options.pollNanoseconds : options.deepPollNanoseconds
            var yielding = window == options.pollNanoseconds
            if core.storageInFlight > 0 && options.storagePollNanoseconds > window {
                // Backend work is in flight: its completions are due.
                window = options.storagePollNanoseconds
                yielding = true
            }
            if window > 0 && MonotonicClock.nanoseconds() &- lastWork < window {
                // Polling: EventIdx stays at "never trap" and the shadow tails and the
                // mailbox are re-read each turn; yielding lets the host's threads run on
                // a busy machine instead of being starved by the poll.
                polling = true
                if yielding { sched_yield() }
                continue
            }
            polling = false
            if core.armForPark() { continue }
            counters.add(.parks)
            let open = core.wake == nil ? mailbox.park() : mailbox.parkOnSignal { core.hasStorageCompletions }
            guard open else { break }
            counters.add(.wakeups)
            lastWork = MonotonicClock.nanoseconds()
        }
        // Release anything still recorded; no backend work may outlive the device.
        mailbox.take(into: &traps)
        core.closeStorage()
        finished.withLock {
            running = false
            finished.broadcast()
        }
    }
}
