import ConcurrencyHelpers
import DMA
import Logging
import NBDProtocol
import NIOCore
import NIOSSL
import Synchronization

/// What every connection shares: the exports, the limits, and whether the
/// server is shutting down.
final class ServerContext: Sendable {
    let exports: [Export]
    let handshake: NBDServerHandshake.Configuration
    let logger: Logger
    let limits: ConnectionLimits
    let shuttingDown = Atomic<Bool>(false)
    let connectionCount = Atomic<Int>(0)
    let registry = ConnectionRegistry()
    let memoryBudget: ServerMemoryBudget
    let observer: (any NBDRequestObserver)?
    /// The TLS context every `NBD_OPT_STARTTLS` uses; nil with `--tls off`.
    let tls: NIOSSLContext?

    init(
        exports: [Export], limits: ConnectionLimits, tlsMode: TLSSettings.Mode = .off, tls: NIOSSLContext? = nil,
        logger: Logger, observer: (any NBDRequestObserver)? = nil
    ) {
        self.tls = tls
        self.observer = observer
        self.exports = exports
        self.limits = limits
        memoryBudget = ServerMemoryBudget(capacity: max(limits.memoryBudgetBytes, 1))
        self.logger = logger
        handshake = NBDServerHandshake.Configuration(
            exports: exports.map(\.nbd), offersBaseAllocation: true,
            tls: tls == nil ? .off : tlsMode.handshakeMode)
    }

    func export(named name: String) -> Export? {
        exports.first { $0.nbd.name == name }
    }
}

/// Per-connection limits.
public struct ConnectionLimits: Sendable {
    /// Requests a connection may have in flight before the server stops reading
    /// from it (back-pressure).
    public var maximumInFlightRequests = 256
    /// Payload bytes a connection may have in flight before reading stops.
    public var maximumInFlightBytes = 128 << 20
    /// Bytes all connections together may hold for write payloads in flight and
    /// read replies not yet written (``ServerMemoryBudget``); past it reading
    /// pauses until replies drain.
    public var memoryBudgetBytes = 1 << 30
    /// A handshake that has not reached transmission after this long is closed.
    public var handshakeTimeoutSeconds: Int64 = 30
    /// Connections accepted at once across all listeners; more are refused.
    public var maximumConnections = 1024
    /// Reads at least this long are answered with OFFSET_HOLE chunks where the
    /// namespace is deallocated (structured replies only).
    public var holeDetectionThreshold = 64 << 10
    /// After submitting what a read from the socket produced, the event loop polls
    /// its completion queue this long (vector masked) before going back to wait for
    /// an interrupt; 0 disables polling.
    public var completionPollNanoseconds: UInt64 = 20_000
    /// Poll only when at most this many commands are in flight on the queue pair.
    /// 4 matches the controller's shallow-queue polling (``ControllerOptions/pollBatchLimit``):
    /// measured with scripts/bench, 4 KiB random reads at QD2-8 over a Unix socket
    /// gained 10-45% over 2 (the reply goes out without an interrupt's wake-up);
    /// QD16 and deeper are unchanged (more is in flight, no polling).
    public var completionPollDepth = 4
    /// At server shutdown, how long an idle connection stays open answering
    /// requests with ESHUTDOWN while waiting for the client's NBD_CMD_DISC.
    public var shutdownLingerMilliseconds: Int64 = 1000

    public init() {}
}

/// The live connections, so shutdown can reach them.
final class ConnectionRegistry: @unchecked Sendable {
    private let lock = ConditionMutex()
    private var next = 0
    private var entries: [Int: @Sendable () -> Void] = [:]

    func add(_ onShutdown: @escaping @Sendable () -> Void) -> Int {
        lock.withLock {
            next += 1
            entries[next] = onShutdown
            return next
        }
    }

    func remove(_ id: Int) {
        _ = lock.withLock { entries.removeValue(forKey: id) }
    }

    func all() -> [@Sendable () -> Void] { lock.withLock { Array(entries.values) } }
    var count: Int { lock.withLock { entries.count } }
}
