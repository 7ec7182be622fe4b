import NVMe

/// How the emulated controller presents itself: the knobs a QEMU `-device nvme`
/// line would carry (`mqes`, `max_ioqpairs`, `mdts`, `msix_qsize`, ...).
public struct ControllerOptions: Sendable, Hashable {
    /// CAP.MQES + 1: the largest queue, in entries, the controller accepts (2...65536).
    public var maximumQueueEntries: Int = 4096
    /// Largest number of I/O submission/completion queue pairs (QEMU `max_ioqpairs`).
    public var maximumIOQueuePairs: Int = 64
    /// Identify Controller MDTS: transfers up to `2^MDTS` pages of 4 KiB (QEMU's default 7 = 512 KiB).
    public var maximumDataTransferSize: UInt8 = 7
    /// Identify Controller OACS bit 8: whether Doorbell Buffer Config is offered.
    public var doorbellBufferConfig: Bool = true
    /// CAP.DSTRD: doorbells are `4 << DSTRD` bytes apart.
    public var doorbellStride: UInt8 = 0
    /// MSI-X vectors the device exposes (QEMU `msix_qsize`).
    public var interruptVectors: Int = 65
    /// CAP.TO in 500 ms units: how long the host waits for CSTS.RDY.
    public var readyTimeout500ms: UInt8 = 15
    /// How long the controller thread keeps polling the queues after its last work
    /// before it arms EventIdx and parks, in nanoseconds; 0 parks at once. Polling
    /// is the same in both doorbell modes (it also takes traps without a wake-up).
    /// The library default parks at once; `nvme-nbd serve` polls
    /// ``recommendedPollNanoseconds`` (`--poll-us`).
    public var pollNanoseconds: UInt64 = 0
    /// The polling window `nvme-nbd serve` uses by default (its `--poll-us`).
    public static let recommendedPollNanoseconds: UInt64 = 50_000
    /// The deep-queue polling window `nvme-nbd serve` uses by default (`--deep-poll-us`).
    public static let recommendedDeepPollNanoseconds: UInt64 = 10_000
    /// Adaptive polling: poll only while productive rounds average at most this
    /// many commands. Shallow queues (a new command every few microseconds, one
    /// at a time) gain a wake-up per command; deep queues keep the controller busy
    /// anyway, and spinning would only take CPU from the host.
    public var pollBatchLimit: Int = 4
    /// The (short) polling window while the queues run deeper than
    /// ``pollBatchLimit``: long enough to bridge the gap between two bursts of
    /// submissions without parking (and making the next submission trap).
    public var deepPollNanoseconds: UInt64 = 0
    /// How long the controller keeps polling, yielding, after its last work while
    /// backend operations are in flight on an engine (their completions are due
    /// soon), in nanoseconds; 0 parks as soon as the queues are idle and lets the
    /// storage wake it. Parking costs a wake-up per completion batch, on a
    /// virtual machine tens of microseconds each; polling costs CPU.
    public var storagePollNanoseconds: UInt64 = 0
    /// The storage polling window `nvme-nbd serve` uses by default (`--storage-poll-us`):
    /// none. On the 2-core machines measured, polling through disk latencies took
    /// the CPU the client and the event loop needed (4 KiB cold random reads at
    /// QD32: 34.7k IOPS without, 28.9k with 200 µs); it pays where the controller
    /// has a core to itself.
    public static let recommendedStoragePollNanoseconds: UInt64 = 0
    /// How the controller keeps EventIdx (README, "EventIdx policies"): like
    /// SPDK, or like QEMU.
    public var eventIndexPolicy: EventIndexPolicy = .spdk
    /// Commands taken from one submission queue before the controller turns to the
    /// next queue and signals completions (round-robin arbitration burst).
    public var arbitrationBurst: Int = 16
    /// Fault injection: answer Doorbell Buffer Config with this status although
    /// OACS bit 8 is set (firmware that refuses it), to exercise a driver's
    /// fallback to MMIO doorbells. `nil`: the command works.
    public var doorbellBufferConfigFailure: NVMeStatus? = nil
    /// Identify Controller serial and model numbers.
    public var serialNumber: String = "NVMENBD0001"
    public var modelNumber: String = "nvme-nbd emulated controller"
    public var controllerID: UInt16 = 0

    public init() {}

    /// Largest transfer in bytes, MDTS applied to the 4 KiB memory page size.
    public var maximumTransferBytes: Int {
        maximumDataTransferSize == 0 ? Int.max : 4096 << Int(maximumDataTransferSize)
    }

    /// Checks the values a user can give; the message says what is accepted.
    public func validate() throws(ControllerConfigurationError) {
        guard (2...65536).contains(maximumQueueEntries) else {
            throw .invalid("maximum queue entries \(maximumQueueEntries): accepted 2...65536")
        }
        guard (1...65535).contains(maximumIOQueuePairs) else {
            throw .invalid("maximum I/O queue pairs \(maximumIOQueuePairs): accepted 1...65535")
        }
        guard maximumDataTransferSize <= 12 else {
            throw .invalid("MDTS \(maximumDataTransferSize): accepted 0...12 (0 means no limit)")
        }
        guard doorbellStride <= 15 else { throw .invalid("doorbell stride \(doorbellStride): accepted 0...15") }
        guard (1...2048).contains(interruptVectors) else {
            throw .invalid("interrupt vectors \(interruptVectors): accepted 1...2048")
        }
        guard arbitrationBurst >= 1 else { throw .invalid("arbitration burst must be at least 1") }
    }
}

/// The two EventIdx policies in the field (README, "EventIdx policies").
public enum EventIndexPolicy: String, Sendable, Hashable, CaseIterable {
    /// SPDK's `vfio_user.c`: while awake, EventIdx stays where the host never
    /// crosses it (one behind the head); it is armed (= the tail consumed, or for a
    /// completion queue holding completions, the head known) only just before the
    /// controller parks, and the completion queue head is otherwise never asked for.
    case spdk
    /// QEMU's `hw/nvme`: SQ EventIdx = the tail consumed after every fetch, CQ
    /// EventIdx = the head known before every post, so the host traps once per
    /// batch of submissions or of consumed completions, awake or not.
    case qemu
}

/// A controller or namespace configuration that cannot be built.
public enum ControllerConfigurationError: Error, Hashable, Sendable, CustomStringConvertible {
    case invalid(String)
    public var description: String {
        switch self {
        case .invalid(let s): "invalid controller configuration: \(s)"
        }
    }
}
