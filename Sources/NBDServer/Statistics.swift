import NVMeController
import NVMeHost
import Synchronization

/// NBD-level counters of one export.
public final class NBDStatisticsCounters: Sendable {
    let reads = Atomic<UInt64>(0)
    let writes = Atomic<UInt64>(0)
    let flushes = Atomic<UInt64>(0)
    let trims = Atomic<UInt64>(0)
    let writeZeroes = Atomic<UInt64>(0)
    let caches = Atomic<UInt64>(0)
    let blockStatus = Atomic<UInt64>(0)
    let bytesRead = Atomic<UInt64>(0)
    let bytesWritten = Atomic<UInt64>(0)
    let errors = Atomic<UInt64>(0)
    let unalignedRequests = Atomic<UInt64>(0)
    let connections = Atomic<UInt64>(0)
    let activeConnections = Atomic<Int64>(0)

    init() {}

    @inline(__always) func bump(_ c: borrowing Atomic<UInt64>, by n: UInt64 = 1) { c.add(n, ordering: .relaxed) }

    func snapshot() -> NBDStatistics {
        var s = NBDStatistics()
        s.reads = reads.load(ordering: .relaxed)
        s.writes = writes.load(ordering: .relaxed)
        s.flushes = flushes.load(ordering: .relaxed)
        s.trims = trims.load(ordering: .relaxed)
        s.writeZeroes = writeZeroes.load(ordering: .relaxed)
        s.caches = caches.load(ordering: .relaxed)
        s.blockStatus = blockStatus.load(ordering: .relaxed)
        s.bytesRead = bytesRead.load(ordering: .relaxed)
        s.bytesWritten = bytesWritten.load(ordering: .relaxed)
        s.errors = errors.load(ordering: .relaxed)
        s.unalignedRequests = unalignedRequests.load(ordering: .relaxed)
        s.connections = connections.load(ordering: .relaxed)
        s.activeConnections = activeConnections.load(ordering: .relaxed)
        return s
    }
}

/// A copy of the NBD counters.
public struct NBDStatistics: Codable, Hashable, Sendable {
    public var reads: UInt64 = 0
    public var writes: UInt64 = 0
    public var flushes: UInt64 = 0
    public var trims: UInt64 = 0
    public var writeZeroes: UInt64 = 0
    public var caches: UInt64 = 0
    public var blockStatus: UInt64 = 0
    public var bytesRead: UInt64 = 0
    public var bytesWritten: UInt64 = 0
    /// Requests answered with an error.
    public var errors: UInt64 = 0
    /// Requests not aligned to the LBA size (served with read-modify-write).
    public var unalignedRequests: UInt64 = 0
    public var connections: UInt64 = 0
    public var activeConnections: Int64 = 0

    public var requests: UInt64 { reads + writes + flushes + trims + writeZeroes + caches + blockStatus }
}

/// Everything counted for one export: what `--stats-json` writes.
public struct ExportStatistics: Codable, Hashable, Sendable {
    public var name: String
    public var shadowDoorbells: Bool
    public var controller: ControllerStatistics
    public var host: HostStatistics
    public var nbd: NBDStatistics
    /// MMIO doorbell writes (SQ tail + CQ head traps on I/O queues) per NVMe I/O command.
    public var mmioDoorbellWritesPerIO: Double
    /// Interrupts raised per NVMe I/O command.
    public var interruptsPerIO: Double

    public init(name: String, shadowDoorbells: Bool, controller: ControllerStatistics, host: HostStatistics, nbd: NBDStatistics) {
        self.name = name
        self.shadowDoorbells = shadowDoorbells
        self.controller = controller
        self.host = host
        self.nbd = nbd
        let io = Double(max(controller.ioCommands, 1))
        mmioDoorbellWritesPerIO = controller.ioCommands == 0 ? 0 : Double(controller.mmioIODoorbellWrites) / io
        interruptsPerIO = controller.ioCommands == 0 ? 0 : Double(controller[.interruptsRaised]) / io
    }
}
