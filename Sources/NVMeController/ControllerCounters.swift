import Synchronization

/// The controller's event counters, readable from any thread while it runs
/// (DESIGN.md "Counters"). The controller thread is the only writer of most of
/// them; relaxed atomic increments keep a reader from ever seeing a torn value.
public final class ControllerCounters: Sendable {
    // Doorbell traps (MMIO writes to the doorbell registers).
    let mmioSQTailWrites = Atomic<UInt64>(0)
    let mmioCQHeadWrites = Atomic<UInt64>(0)
    let mmioAdminDoorbellWrites = Atomic<UInt64>(0)
    let mmioRegisterWrites = Atomic<UInt64>(0)
    let mmioReads = Atomic<UInt64>(0)
    let mmioMSIXWrites = Atomic<UInt64>(0)
    let invalidDoorbellWrites = Atomic<UInt64>(0)
    // Shadow doorbell / EventIdx traffic on the device side.
    let shadowDoorbellReads = Atomic<UInt64>(0)
    let eventIndexWrites = Atomic<UInt64>(0)
    // Commands.
    let adminCommands = Atomic<UInt64>(0)
    let reads = Atomic<UInt64>(0)
    let writes = Atomic<UInt64>(0)
    let flushes = Atomic<UInt64>(0)
    let writeZeroes = Atomic<UInt64>(0)
    let datasetManagement = Atomic<UInt64>(0)
    let allocationMaps = Atomic<UInt64>(0)
    let otherIOCommands = Atomic<UInt64>(0)
    let commandErrors = Atomic<UInt64>(0)
    let bytesRead = Atomic<UInt64>(0)
    let bytesWritten = Atomic<UInt64>(0)
    // Completion and interrupt path.
    let completionsPosted = Atomic<UInt64>(0)
    let completionQueueFullStalls = Atomic<UInt64>(0)
    let interruptsRaised = Atomic<UInt64>(0)
    let interruptsHeld = Atomic<UInt64>(0)
    // Thread life.
    let parks = Atomic<UInt64>(0)
    let wakeups = Atomic<UInt64>(0)
    let pollHits = Atomic<UInt64>(0)
    let resets = Atomic<UInt64>(0)
    let shutdowns = Atomic<UInt64>(0)
    // Asynchronous namespaces.
    let storageOperations = Atomic<UInt64>(0)
    let storageInFlightPeak = Atomic<UInt64>(0)
    let inFlightLimitStalls = Atomic<UInt64>(0)
    let flushesCoalesced = Atomic<UInt64>(0)

    public init() {}

    @inline(__always)
    func bump(_ counter: borrowing Atomic<UInt64>, by n: UInt64 = 1) {
        counter.add(n, ordering: .relaxed)
    }

    /// Sets a high-water mark (only the controller thread writes it).
    @inline(__always)
    func raise(_ counter: borrowing Atomic<UInt64>, to value: UInt64) {
        if counter.load(ordering: .relaxed) < value { counter.store(value, ordering: .relaxed) }
    }

    /// A consistent-enough copy of every counter (each read atomically).
    public func snapshot() -> ControllerStatistics {
        ControllerStatistics(
            mmioSQTailDoorbellWrites: mmioSQTailWrites.load(ordering: .relaxed),
            mmioCQHeadDoorbellWrites: mmioCQHeadWrites.load(ordering: .relaxed),
            mmioAdminDoorbellWrites: mmioAdminDoorbellWrites.load(ordering: .relaxed),
            mmioRegisterWrites: mmioRegisterWrites.load(ordering: .relaxed),
            mmioReads: mmioReads.load(ordering: .relaxed),
            mmioMSIXWrites: mmioMSIXWrites.load(ordering: .relaxed),
            invalidDoorbellWrites: invalidDoorbellWrites.load(ordering: .relaxed),
            shadowDoorbellReads: shadowDoorbellReads.load(ordering: .relaxed),
            eventIndexWrites: eventIndexWrites.load(ordering: .relaxed),
            adminCommands: adminCommands.load(ordering: .relaxed),
            reads: reads.load(ordering: .relaxed),
            writes: writes.load(ordering: .relaxed),
            flushes: flushes.load(ordering: .relaxed),
            writeZeroes: writeZeroes.load(ordering: .relaxed),
            datasetManagement: datasetManagement.load(ordering: .relaxed),
            allocationMaps: allocationMaps.load(ordering: .relaxed),
            otherIOCommands: otherIOCommands.load(ordering: .relaxed),
            commandErrors: commandErrors.load(ordering: .relaxed),
            bytesRead: bytesRead.load(ordering: .relaxed),
            bytesWritten: bytesWritten.load(ordering: .relaxed),
            completionsPosted: completionsPosted.load(ordering: .relaxed),
            completionQueueFullStalls: completionQueueFullStalls.load(ordering: .relaxed),
            interruptsRaised: interruptsRaised.load(ordering: .relaxed),
            interruptsHeld: interruptsHeld.load(ordering: .relaxed),
            parks: parks.load(ordering: .relaxed),
            wakeups: wakeups.load(ordering: .relaxed),
            pollHits: pollHits.load(ordering: .relaxed),
            resets: resets.load(ordering: .relaxed),
            shutdowns: shutdowns.load(ordering: .relaxed),
            storageOperations: storageOperations.load(ordering: .relaxed),
            storageInFlightPeak: storageInFlightPeak.load(ordering: .relaxed),
            inFlightLimitStalls: inFlightLimitStalls.load(ordering: .relaxed),
            flushesCoalesced: flushesCoalesced.load(ordering: .relaxed))
    }
}

/// A copy of ``ControllerCounters`` at one moment. Field names are the JSON keys
/// of `--stats-json`.
public struct ControllerStatistics: Codable, Hashable, Sendable {
    /// Traps: MMIO writes to an I/O submission queue tail doorbell.
    public var mmioSQTailDoorbellWrites: UInt64
    /// Traps: MMIO writes to an I/O completion queue head doorbell.
    public var mmioCQHeadDoorbellWrites: UInt64
    /// Traps: MMIO writes to the admin queue doorbells (never shadowed).
    public var mmioAdminDoorbellWrites: UInt64
    /// Traps: MMIO writes to other registers (CC, AQA, ASQ, ACQ, ...).
    public var mmioRegisterWrites: UInt64
    public var mmioReads: UInt64
    /// Traps: MSI-X table writes (a Mask Bit set or cleared), as a guest's VM exit
    /// for each.
    public var mmioMSIXWrites: UInt64
    /// Doorbell writes naming no queue or carrying a value outside the queue.
    public var invalidDoorbellWrites: UInt64
    /// Loads of a Shadow Doorbell entry by the controller.
    public var shadowDoorbellReads: UInt64
    /// Stores to an EventIdx entry by the controller.
    public var eventIndexWrites: UInt64
    public var adminCommands: UInt64
    public var reads: UInt64
    public var writes: UInt64
    public var flushes: UInt64
    public var writeZeroes: UInt64
    public var datasetManagement: UInt64
    public var allocationMaps: UInt64
    public var otherIOCommands: UInt64
    /// Completions with a status other than Successful Completion.
    public var commandErrors: UInt64
    public var bytesRead: UInt64
    public var bytesWritten: UInt64
    public var completionsPosted: UInt64
    /// Times the controller held completions because a completion queue was full.
    public var completionQueueFullStalls: UInt64
    /// MSI-X messages sent to the host (one per signalled completion batch; the
    /// host merges those that arrive while it is already servicing the vector).
    public var interruptsRaised: UInt64
    /// Messages held by a masked vector (sent on unmask).
    public var interruptsHeld: UInt64
    /// Times the controller thread went idle (armed EventIdx and slept).
    public var parks: UInt64
    /// Times it was woken again by a trap.
    public var wakeups: UInt64
    /// Times polling found work before the thread parked.
    public var pollHits: UInt64
    /// Controller resets (CC.EN 1 → 0).
    public var resets: UInt64
    /// Shutdown notifications acted on (CC.SHN 00b → non-zero).
    public var shutdowns: UInt64
    /// Backend operations started on an asynchronous engine (io_uring, threads).
    public var storageOperations: UInt64
    /// The most backend operations in flight at once.
    public var storageInFlightPeak: UInt64
    /// Times the controller left a command in its queue because the namespace was
    /// at its in-flight bound.
    public var inFlightLimitStalls: UInt64
    /// Flushes answered without an `fdatasync` of their own: nothing had completed
    /// since a successful Flush, or one in flight covered them.
    public var flushesCoalesced: UInt64

    /// I/O commands of the NVM command set processed.
    public var ioCommands: UInt64 {
        reads + writes + flushes + writeZeroes + datasetManagement + allocationMaps + otherIOCommands
    }
    /// MMIO writes to I/O queue doorbells: the trap count shadow doorbells exist to cut.
    public var mmioIODoorbellWrites: UInt64 { mmioSQTailDoorbellWrites + mmioCQHeadDoorbellWrites }
}
