import ConcurrencyHelpers
import NVMeController
import NVMeHost

/// The NBD-level counters of one export (`nbd` in `--stats-json`).
public enum NBDCounter: Int, CounterKey {
    // Requests, by command (proto.md "Request types").
    case reads, writes, flushes, trims, writeZeroes, caches, blockStatus
    /// Payload bytes of successful reads and writes.
    case bytesRead, bytesWritten
    /// Requests answered with an error.
    case errors
    /// Requests not aligned to the LBA size (served with read-modify-write).
    case unalignedRequests
    /// Connections that reached the transmission phase.
    case connections
    /// Connections in the transmission phase now (a gauge).
    case activeConnections
}

/// The live NBD counters of one export.
public typealias NBDStatisticsCounters = CounterBlock<NBDCounter>
/// A copy of them.
public typealias NBDStatistics = CounterValues<NBDCounter>

extension CounterValues where Key == NBDCounter {
    /// Requests of every kind.
    public var requests: UInt64 {
        [.reads, .writes, .flushes, .trims, .writeZeroes, .caches, .blockStatus].reduce(0) { $0 + self[$1] }
    }
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

    public init(
        name: String, shadowDoorbells: Bool, controller: ControllerStatistics, host: HostStatistics, nbd: NBDStatistics
    ) {
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
