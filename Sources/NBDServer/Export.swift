import BlockBackends
import ConcurrencyHelpers
import DMA
import Dispatch
import Logging
import NBDProtocol
import NIOCore
import NVMe
import NVMeController
import NVMeHost

/// How every export's emulated controller and driver are set up.
public struct ExportOptions: Sendable {
    /// Use Doorbell Buffer Config (shadow doorbells + EventIdx) when offered.
    public var shadowDoorbells = true
    /// Entries per I/O queue.
    public var queueDepth = 1024
    /// The controller thread's polling window before it parks, in nanoseconds.
    public var pollNanoseconds = ControllerOptions.recommendedPollNanoseconds
    /// The controller's polling window while its queues run deep.
    public var deepPollNanoseconds = ControllerOptions.recommendedDeepPollNanoseconds
    /// The controller's polling window while backend work is in flight.
    public var storagePollNanoseconds = ControllerOptions.recommendedStoragePollNanoseconds
    /// How the controller keeps EventIdx (SPDK's or QEMU's policy).
    public var eventIndexPolicy = EventIndexPolicy.spdk
    /// Identify Controller MDTS.
    public var maximumDataTransferSize: UInt8 = 7
    /// DMA arena per export (virtual; pages cost memory only once used).
    public var hostMemoryBytes = 2 << 30
    /// Largest NBD payload (read or write) accepted.
    public var maximumPayload = 32 << 20
    /// Wraps each export's backend (tests use it to inject faults with
    /// `FaultInjectingBackend`).
    public var wrapBackend: (@Sendable (any BlockBackend) -> any BlockBackend)?
    /// How often the watchdog checks the controller for a fatal status (CSTS.CFS)
    /// and for commands outstanding too long; 0 disables it.
    public var watchdogMilliseconds = 500
    /// A command outstanding this long makes the watchdog reset the controller
    /// (Linux's `nvme_timeout` after `io_timeout`, 30 s by default).
    public var commandTimeoutSeconds = 30

    public init() {}
}

/// A running export: its own emulated NVMe controller with one namespace, the
/// host driver with one I/O queue pair per event loop (as blk-mq gives each CPU
/// a hardware queue), and what the NBD handshake advertises about it.
public final class Export: Sendable {
    public let spec: ExportSpec
    public let memory: HostMemory
    public let controller: EmulatedController
    public let driver: NVMeDriver
    public let namespace: NamespaceInfo
    public let nbd: NBDExport
    public let statistics = NBDStatisticsCounters()
    public let maximumPayload: Int
    let fileBacked: Bool
    let rmwGate = RMWGate()
    private let queueByLoop: [ObjectIdentifier: Int]
    private let watchdog: Watchdog?

    /// Builds the backend, the controller and the driver, and brings the
    /// controller up. Errors name the export and what was wrong.
    public init(
        spec: ExportSpec, loops: [any EventLoop], options: ExportOptions,
        logger: Logger = Logger(label: "nvme-nbd")
    ) throws(ExportError) {
        self.spec = spec
        maximumPayload = options.maximumPayload
        var backend: any BlockBackend
        do {
            switch spec.backing {
            case .memory:
                backend = try MemoryBackend(byteCount: spec.size ?? (1 << 30), readOnly: spec.readOnly)
                fileBacked = false
            case .file(let path):
                #if os(Linux)
                backend = try FileBackend(
                    path: path, readOnly: spec.readOnly, createSize: spec.size, caching: spec.cache)
                fileBacked = true
                #else
                throw ExportError(export: spec.name, problem: "file backing needs Linux")
                #endif
            }
        } catch {
            throw ExportError(export: spec.name, problem: error.description)
        }
        if let wrap = options.wrapBackend { backend = wrap(backend) }
        // The LBA size: as asked, else what the storage prefers (NVMe offers 512 and
        // 4096; a 2048-byte device sector fits in 4096), else 512.
        let blockSize = spec.blockSize ?? ((backend.preferredBlockSize ?? 512) > 512 ? 4096 : 512)
        exactSize = backend.byteCount
        do {
            memory = try HostMemory(byteCount: options.hostMemoryBytes)
        } catch {
            throw ExportError(export: spec.name, problem: "cannot map DMA memory: \(error)")
        }
        do {
            let ns = try Namespace(backend: backend, blockSize: blockSize, io: spec.io)
            var co = ControllerOptions()
            co.maximumIOQueuePairs = max(loops.count, 1)
            co.maximumDataTransferSize = options.maximumDataTransferSize
            // "off" is a controller without the feature (OACS bit 8 clear): the driver
            // then stays on MMIO doorbells, as Linux does.
            co.doorbellBufferConfig = options.shadowDoorbells
            co.pollNanoseconds = options.pollNanoseconds
            co.deepPollNanoseconds = options.deepPollNanoseconds
            co.storagePollNanoseconds = options.storagePollNanoseconds
            co.eventIndexPolicy = options.eventIndexPolicy
            co.maximumQueueEntries = max(options.queueDepth, 2)
            co.serialNumber = "NVMENBD-\(Self.serialSuffix(spec.name))"
            controller = try EmulatedController(memory: memory, namespaces: [ns], options: co)
        } catch {
            throw ExportError(export: spec.name, problem: error.description)
        }
        for note in controller.storageNotes { Self.logOnce(note, logger) }
        var dopts = DriverOptions()
        dopts.ioQueuePairs = max(loops.count, 1)
        dopts.queueDepth = options.queueDepth
        dopts.useShadowDoorbells = options.shadowDoorbells
        let loopList = loops
        dopts.interrupts = { index in
            guard index < loopList.count else { return .dedicatedThread }
            let loop = loopList[index]
            // The interrupt is delivered to the queue's event loop, as an MSI-X
            // vector is steered to one CPU: completions and replies happen there.
            return .custom { qp in loop.execute { qp.processCompletions() } }
        }
        driver = NVMeDriver(function: controller, memory: memory, options: dopts)
        do {
            try driver.start()
        } catch {
            controller.stop()
            throw ExportError(export: spec.name, problem: "controller bring-up failed: \(error)")
        }
        for warning in driver.warnings { logger.warning("export '\(spec.name)': \(warning)") }
        guard let info = driver.namespaces.first else {
            throw ExportError(export: spec.name, problem: "the controller reports no namespace")
        }
        namespace = info
        var map: [ObjectIdentifier: Int] = [:]
        for (i, l) in loops.enumerated() { map[ObjectIdentifier(l)] = i }
        queueByLoop = map

        var flags: NBDTransmissionFlags = [.hasFlags, .sendFlush, .sendDF, .canMultiConn, .sendCache]
        if info.isRotational { flags.insert(.rotational) }
        if spec.readOnly {
            // Advertise exactly what works: TRIM, WRITE_ZEROES and FUA (a write flag)
            // would all be refused with EPERM, so a read-only export offers none of
            // them (nbdkit does the same). They are still answered with EPERM if sent.
            flags.insert(.readOnly)
        } else {
            flags.formUnion([.sendFUA, .sendTrim, .sendWriteZeroes, .sendFastZero])
        }
        let preferred = UInt32(max(4096, blockSize))
        // Minimum 1: unaligned requests are served with read-modify-write, so clients
        // that did not negotiate sizes get the spec's defaults.
        let constraints =
            (try? NBDBlockSizeConstraints(
                minimum: 1, preferred: preferred,
                maximum: UInt32(options.maximumPayload))) ?? .default
        // The exact size of the storage: the namespace rounds it up to whole
        // blocks, and the controller answers the padding with zeroes.
        nbd = NBDExport(
            name: spec.name, description: spec.exportDescription, size: exactSize, flags: flags,
            blockSize: constraints)
        watchdog =
            options.watchdogMilliseconds > 0
            ? Watchdog(
                driver: driver, export: spec.name, intervalMilliseconds: options.watchdogMilliseconds,
                commandTimeoutSeconds: options.commandTimeoutSeconds, logger: logger)
            : nil
    }

    private static func serialSuffix(_ name: String) -> String {
        var h: UInt32 = 2_166_136_261
        for b in name.utf8 { h = (h ^ UInt32(b)) &* 16_777_619 }
        return String(h, radix: 16, uppercase: true)
    }

    /// The queue pair of the event loop `loop` runs on.
    public func queuePair(for loop: any EventLoop) -> QueuePair {
        let i = queueByLoop[ObjectIdentifier(loop)] ?? 0
        return driver.queuePairs[i % driver.queuePairs.count]
    }

    public var blockShift: Int { Int(namespace.blockSizeShift) }
    /// The export's size in bytes: the storage's exact size (the namespace may
    /// end up to one logical block later).
    public var size: UInt64 { exactSize }
    private let exactSize: UInt64

    /// Logs `message` the first time this process sees it (io_uring refused for
    /// every file export is said once, not per export).
    private static func logOnce(_ message: String, _ logger: Logger) {
        if loggedOnce.withLock({ $0.insert(message).inserted }) { logger.warning("\(message)") }
    }
    private static let loggedOnce = Locked<Set<String>>([])

    /// Flushes the namespace, shuts the controller down (CC.SHN) and stops its thread.
    public func close() {
        watchdog?.stop()
        if let qp = driver.queuePairs.first, !spec.readOnly {
            let done = CompletionFlag()
            qp.flush { _ in done.set() }
            done.wait(milliseconds: 30_000)
        }
        driver.shutdown()
        controller.stop()
    }

    /// Everything counted for this export.
    public func snapshot() -> ExportStatistics {
        ExportStatistics(
            name: spec.name, shadowDoorbells: driver.shadowDoorbellsEnabled,
            controller: controller.counters.snapshot(), host: driver.statistics,
            nbd: statistics.snapshot())
    }
}

/// An export that could not be opened.
public struct ExportError: Error, Hashable, Sendable, CustomStringConvertible {
    public var export: String
    public var problem: String
    public var description: String { "export '\(export)': \(problem)" }
}
