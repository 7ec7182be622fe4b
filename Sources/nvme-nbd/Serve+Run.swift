import ArgumentParser
import Dispatch
import Foundation
import Logging
import NBDMetrics
import NBDServer
import ServiceLife
import ServiceLifecycle

/// `serve`: start-up, the service group, and shutdown.
extension Serve {
    func run() throws {
        if version {
            print("nvme-nbd \(NVMeNBDVersion.string)")
            return
        }
        // First, while this is the only thread: every thread started later (event
        // loops, controllers, dispatch, the cooperative pool) inherits the mask, so
        // one sent during start-up waits until the service group's signal sources
        // (signalfd) take it.
        do {
            try SignalWaiter.block([SIGINT, SIGTERM, SIGUSR1])
        } catch {
            FileHandle.standardError.write(Data("nvme-nbd: \(error)\n".utf8))
            throw ExitCode(1)
        }
        signal(SIGPIPE, SIG_IGN)
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = logLevel.level
            return h
        }
        let logger = {
            var l = Logger(label: "nvme-nbd")
            l.logLevel = logLevel.level
            return l
        }()

        func failure(_ message: String) -> ExitCode {
            FileHandle.standardError.write(Data("nvme-nbd: \(message)\n".utf8))
            return ExitCode(1)
        }

        let inherited: [InheritedListener]?
        do {
            inherited = try SocketActivation.takeListeners()
        } catch {
            throw failure("\(error)")
        }
        if let inherited {
            // As nbdkit-service(1): with socket activation the listeners are the
            // inherited sockets; binding others or running a captive command is an error.
            var given: [String] = []
            if !listen.isEmpty { given.append("--listen") }
            if port != nil { given.append("-p/--port") }
            if bind != nil { given.append("-b/--bind") }
            if !unix.isEmpty { given.append("-U/--unix") }
            if runCommand != nil { given.append("--run") }
            guard given.isEmpty else {
                throw failure(
                    "socket activation (LISTEN_PID/LISTEN_FDS) cannot be combined with \(given.joined(separator: ", ")): the server listens on the inherited sockets"
                )
            }
            guard !inherited.isEmpty else {
                throw failure("socket activation: LISTEN_FDS=0 passes no socket to listen on")
            }
        }

        // nbdkit's "-U -": a private socket in a new directory only this user can enter.
        var privateDirectory: String?
        var unixPaths = unix
        if let i = unixPaths.firstIndex(of: "-") {
            let dir = (NSTemporaryDirectory() as NSString).appendingPathComponent(
                "nvme-nbd-\(UUID().uuidString.prefix(12))")
            do {
                try FileManager.default.createDirectory(
                    atPath: dir, withIntermediateDirectories: false,
                    attributes: [.posixPermissions: 0o700])
            } catch {
                throw failure("-U -: cannot create a private directory \(dir): \(error)")
            }
            privateDirectory = dir
            unixPaths[i] = (dir as NSString).appendingPathComponent("socket")
        }
        func removePrivateDirectory() {
            if let privateDirectory { try? FileManager.default.removeItem(atPath: privateDirectory) }
        }

        AllocatorTuning.apply()
        var config = NBDServer.Configuration()
        if let inherited {
            config.tcp = []
            config.unix = []
            config.inheritedListeners = inherited
        } else {
            config.tcp = tcpListeners()
            config.unix = unixPaths
        }
        config.exports = try exportSpecs()
        config.exportOptions = exportOptions.exportOptions()
        config.queues = queues
        config.tls = try tlsSettings()
        config.limits.maximumConnections = maxConnections == 0 ? Int.max : maxConnections
        config.limits.handshakeTimeoutSeconds = Int64(handshakeTimeout)
        config.limits.maximumInFlightRequests = maxInFlight
        config.limits.memoryBudgetBytes = try memoryBudgetBytes
        config.limits.completionPollNanoseconds = UInt64(hostPollMicroseconds) * 1000
        config.limits.completionPollDepth = hostPollDepth

        let metricsEndpoint: MetricsEndpoint?
        do { metricsEndpoint = try metrics.start(&config, logger: logger) } catch {
            removePrivateDirectory(); throw error
        }
        let server: NBDServer
        do {
            server = try NBDServer(configuration: config, logger: logger)
        } catch {
            removePrivateDirectory()
            throw failure("\(error)")
        }
        metricsEndpoint?.metrics.attach(server)
        FileHandle.standardError.write(
            Data(
                "nvme-nbd: listening on \(server.boundAddresses.joined(separator: ", ")) (\(server.exports.count) export\(server.exports.count == 1 ? "" : "s"), shadow doorbells \(config.exportOptions.shadowDoorbells ? "on" : "off"), TLS \(config.tls.map { "\($0.mode)" } ?? "off"))\n"
                    .utf8))

        let statsPath = statsJSON
        let writeStats: @Sendable () -> Void = {
            guard let statsPath else { return }
            do {
                try server.writeStatistics(to: statsPath)
            } catch {
                logger.error("cannot write --stats-json \(statsPath): \(error)")
            }
        }

        // Every listener is ready: pid file, then the service manager, then (in the group) the captive command.
        var pid: PIDFile?
        var startupError: String?
        if let pidFile {
            do { pid = try PIDFile(writingTo: pidFile) } catch { startupError = "\(error)" }
        }
        if startupError == nil {
            do {
                if try ServiceNotify.notify("READY=1\nSTATUS=serving \(server.boundAddresses.joined(separator: ", "))")
                {
                    logger.info("told the service manager READY=1")
                }
            } catch {
                logger.warning("\(error)")
            }
        }

        let nbd = StoppedAtShutdown.nbdServer(server, logger: logger)
        let metricsService = metricsEndpoint.map { StoppedAtShutdown.metricsEndpoint($0) }
        let captive = runCommand.map {
            CaptiveCommandService(
                command: $0,
                variables: CaptiveEnvironment.variables(
                    endpoints: server.endpoints, exportName: config.exports.first?.name ?? ""),
                logger: logger)
        }
        // Stopped in reverse order: the command, SIGUSR1 handling, the NBD server, the metrics endpoint.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let metricsService { services.append(.init(service: metricsService)) }
        services.append(.init(service: nbd))
        services.append(.init(service: StatisticsOnSignalService(writeStatistics: writeStats, logger: logger)))
        if let captive {
            services.append(
                .init(
                    service: captive, successTerminationBehavior: .gracefullyShutdownGroup,
                    failureTerminationBehavior: .gracefullyShutdownGroup))
        }
        // With --run, SIGINT/SIGTERM belong to the command (CaptiveCommandService passes them on).
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services, gracefulShutdownSignals: captive == nil ? [.sigterm, .sigint] : [],
                logger: logger))
        let started = startupError == nil
        waitFor {
            if started {
                do { try await group.run() } catch { logger.error("\(error)") }
            } else {
                await nbd.stop()
                await metricsService?.stop()
            }
        }

        writeStats()
        for e in server.statistics() {
            logger.info(
                "export '\(e.name)': \(e.nbd.requests) requests, \(e.controller.ioCommands) NVMe I/O commands, MMIO doorbell writes per I/O \(String(format: "%.4f", e.mmioDoorbellWritesPerIO)), interrupts per I/O \(String(format: "%.4f", e.interruptsPerIO))"
            )
        }
        pid?.remove()
        removePrivateDirectory()
        if let startupError { throw failure(startupError) }
        switch captive?.outcome {
        case .failedToStart(let message): throw failure(message)
        case .exited(let exit) where exit.status != 0: throw ExitCode(exit.status)
        default: break
        }
    }
}

/// Runs `body` on Swift's global executor and blocks this thread (the main
/// thread, outside the cooperative pool) until it returns. `serve` stays a
/// synchronous command so that its first instruction blocks the signals before
/// any thread, the pool's included, exists.
func waitFor(_ body: @escaping @Sendable () async -> Void) {
    let done = DispatchSemaphore(value: 0)
    Task {
        await body()
        done.signal()
    }
    done.wait()
}
