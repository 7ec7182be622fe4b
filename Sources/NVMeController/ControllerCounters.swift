import ConcurrencyHelpers

/// Every counter the controller keeps. The case name is the JSON field name.
public enum ControllerCounter: Int, CounterKey {
    // MARK: Traps: MMIO accesses to BAR0 (NVMe Base Specification 2.0, §3.1.3, Figure 35)

    /// MMIO writes to an I/O Submission Queue Tail Doorbell (SQyTDBL).
    case mmioSQTailDoorbellWrites
    /// MMIO writes to an I/O Completion Queue Head Doorbell (CQyHDBL).
    case mmioCQHeadDoorbellWrites
    /// MMIO writes to the admin queue doorbells (never shadowed).
    case mmioAdminDoorbellWrites
    /// MMIO writes to other registers (CC, AQA, ASQ, ACQ, ...).
    case mmioRegisterWrites
    /// MMIO reads of any register.
    case mmioReads
    /// MSI-X table writes (a Mask Bit set or cleared; PCI Local Bus Specification
    /// 3.0, §6.8.2.9), as a guest's VM exit for each.
    case mmioMSIXWrites
    /// Doorbell writes naming no queue or carrying a value outside the queue
    /// (an Invalid Doorbell Write Value / Register, §5.2, Figure 147).
    case invalidDoorbellWrites

    // MARK: Doorbell Buffer Config (NVMe 1.3 §5.7 / 2.0 §5.9), device side

    /// Loads of a Shadow Doorbell entry by the controller.
    case shadowDoorbellReads
    /// Stores to an EventIdx entry by the controller.
    case eventIndexWrites

    // MARK: Commands

    /// Admin commands processed (§5, Figure 28).
    case adminCommands
    /// Read (02h; NVM Command Set Specification 1.0, §3.2.4).
    case reads
    /// Write (01h; NVM Command Set Specification 1.0, §3.2.6).
    case writes
    /// Flush (00h; NVM Command Set Specification 1.0, §3.2.2).
    case flushes
    /// Write Zeroes (08h; NVM Command Set Specification 1.0, §3.2.8).
    case writeZeroes
    /// Dataset Management (09h; NVM Command Set Specification 1.0, §3.2.3).
    case datasetManagement
    /// Get Allocation Map (vendor specific 82h).
    case allocationMaps
    /// I/O commands with an opcode the controller does not implement.
    case otherIOCommands
    /// Completions with a status other than Successful Completion (§4.6.1, Figure 92).
    case commandErrors
    /// Bytes read by Read commands (the SMART log's Data Units Read, §5.16, Figure 207).
    case bytesRead
    /// Bytes written by Write commands (Data Units Written, Figure 207).
    case bytesWritten

    // MARK: Completions and interrupts

    /// Completion queue entries posted (§4.6, Figure 89).
    case completionsPosted
    /// Times the controller held completions because a completion queue was full (§3.3.1).
    case completionQueueFullStalls
    /// MSI-X messages sent to the host (one per signalled completion batch; the
    /// host merges those that arrive while it is already servicing the vector).
    case interruptsRaised
    /// Messages held by a masked vector (sent on unmask, PCI Local Bus
    /// Specification 3.0, §6.8.2.9).
    case interruptsHeld

    // MARK: The controller thread and its state

    /// Times the controller thread went idle (armed EventIdx and slept).
    case parks
    /// Times it was woken again by a trap.
    case wakeups
    /// Times polling found work before the thread parked.
    case pollHits
    /// Controller resets (CC.EN 1 → 0; §3.1.3.5, Figure 41, and §3.7.2).
    case resets
    /// Shutdown notifications acted on (CC.SHN 00b → non-zero; §3.1.3.5, Figure 41).
    case shutdowns

    // MARK: Asynchronous namespaces

    /// Backend operations started on an asynchronous engine (io_uring, threads).
    case storageOperations
    /// The most backend operations in flight at once (a high-water mark).
    case storageInFlightPeak
    /// Times the controller left a command in its queue because the namespace was
    /// at its in-flight bound.
    case inFlightLimitStalls
    /// Flushes answered without an `fdatasync` of their own: nothing had completed
    /// since a successful Flush, or one in flight covered them.
    case flushesCoalesced
}

extension CounterValues where Key == ControllerCounter {
    /// I/O commands of the NVM command set processed.
    public var ioCommands: UInt64 {
        self[.reads] + self[.writes] + self[.flushes] + self[.writeZeroes] + self[.datasetManagement]
            + self[.allocationMaps] + self[.otherIOCommands]
    }

    /// MMIO writes to I/O queue doorbells: the trap count shadow doorbells exist to cut.
    public var mmioIODoorbellWrites: UInt64 { self[.mmioSQTailDoorbellWrites] + self[.mmioCQHeadDoorbellWrites] }
}

/// The controller's event counters, readable from any thread while it runs
/// (README "Counters"). The controller thread is the only writer of most of them.
public typealias ControllerCounters = CounterBlock<ControllerCounter>

/// A copy of ``ControllerCounters`` at one moment: one `--stats-json` field per
/// ``ControllerCounter``.
public typealias ControllerStatistics = CounterValues<ControllerCounter>
