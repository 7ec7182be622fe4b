import ArgumentParser
import Dispatch
import Foundation
import Logging
import NBDServer

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve exports over NBD (TCP and/or Unix sockets).",
        discussion: """
        With neither --listen nor --unix the server listens on 127.0.0.1:10809. SIGINT/SIGTERM stop it \
        gracefully (requests in flight finish, file exports are flushed, --stats-json is written); SIGUSR1 \
        writes --stats-json without stopping.
        """)

    @Option(name: .customLong("listen"), help: ArgumentHelp("TCP address to listen on. Repeatable.", valueName: "host:port"))
    var listen: [String] = []

    @Option(name: .customLong("unix"), help: ArgumentHelp("Unix socket to listen on. Repeatable.", valueName: "path"))
    var unix: [String] = []

    @OptionGroup var exportOptions: ExportOptionsGroup

    @Option(name: .customLong("queues"), help: "Event-loop threads, and NVMe I/O queue pairs per export (1...64).")
    var queues = 2

    @Option(name: .customLong("stats-json"), help: ArgumentHelp("Write per-export counters here at shutdown and on SIGUSR1.", valueName: "file"))
    var statsJSON: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: LogLevelArgument = .info

    @Option(name: .customLong("max-connections"), help: "Connections served at once; more are refused during the handshake.")
    var maxConnections = 1024

    @Option(name: .customLong("handshake-timeout"), help: "Seconds a client may take to finish the handshake.")
    var handshakeTimeout = 30

    @OptionGroup var metrics: MetricsOptions

    @Option(name: .customLong("host-poll-us"), help: "Microseconds an event loop polls its completion queue after submitting, before waiting for the interrupt (0: interrupts only).")
    var hostPollMicroseconds = 20
    @Option(name: .customLong("host-poll-depth"), help: "Poll the completion queue (--host-poll-us) only while at most this many commands are in flight.")
    var hostPollDepth = 4

    @Option(name: .customLong("max-in-flight"), help: "Requests one connection may have in flight before the server stops reading it.")
    var maxInFlight = 256

    func validate() throws {
        guard (1...64).contains(queues) else { throw ValidationError("--queues \(queues): accepted 1...64") }
        guard maxConnections >= 1 else { throw ValidationError("--max-connections must be at least 1") }
        guard (1...3600).contains(handshakeTimeout) else { throw ValidationError("--handshake-timeout \(handshakeTimeout): accepted 1...3600 seconds") }
        guard (0...1_000_000).contains(hostPollMicroseconds) else { throw ValidationError("--host-poll-us \(hostPollMicroseconds): accepted 0...1000000") }
        guard (0...65536).contains(hostPollDepth) else { throw ValidationError("--host-poll-depth \(hostPollDepth): accepted 0...65536") }
        guard (1...65536).contains(maxInFlight) else { throw ValidationError("--max-in-flight \(maxInFlight): accepted 1...65536") }
        for l in listen {
            do { _ = try NBDServerAddress.parse(l) } catch { throw ValidationError("\(error)") }
        }
        if let s = statsJSON {
            let dir = (s as NSString).deletingLastPathComponent
            let type = try? FileManager.default.attributesOfItem(atPath: dir)[.type] as? FileAttributeType
            if !dir.isEmpty && type != .typeDirectory {
                throw ValidationError("--stats-json \(s): directory \(dir) does not exist")
            }
        }
    }

    func run() throws {
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = logLevel.level
            return h
        }
        var logger = Logger(label: "nvme-nbd")
        logger.logLevel = logLevel.level

        AllocatorTuning.apply()
        var config = NBDServer.Configuration()
        config.tcp = listen.isEmpty && unix.isEmpty ? ["127.0.0.1:10809"] : listen
        config.unix = unix
        config.exports = try exportOptions.specs()
        config.exportOptions = exportOptions.exportOptions()
        config.queues = queues
        config.limits.maximumConnections = maxConnections
        config.limits.handshakeTimeoutSeconds = Int64(handshakeTimeout)
        config.limits.maximumInFlightRequests = maxInFlight
        config.limits.completionPollNanoseconds = UInt64(hostPollMicroseconds) * 1000
        config.limits.completionPollDepth = hostPollDepth

        let metricsEndpoint = try metrics.start(&config, logger: logger)
        let server: NBDServer
        do {
            server = try NBDServer(configuration: config, logger: logger)
        } catch {
            FileHandle.standardError.write(Data("nvme-nbd: \(error)\n".utf8))
            throw ExitCode(1)
        }
        metricsEndpoint?.metrics.attach(server)
        FileHandle.standardError.write(Data("nvme-nbd: listening on \(server.boundAddresses.joined(separator: ", ")) (\(server.exports.count) export\(server.exports.count == 1 ? "" : "s"), shadow doorbells \(config.exportOptions.shadowDoorbells ? "on" : "off"))\n".utf8))

        let stop = DispatchSemaphore(value: 0)
        let statsPath = statsJSON
        func writeStats() {
            guard let statsPath else { return }
            do {
                try server.writeStatistics(to: statsPath)
            } catch {
                logger.error("cannot write --stats-json \(statsPath): \(error)")
            }
        }
        var sources: [DispatchSourceSignal] = []
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { stop.signal() }
            s.resume()
            sources.append(s)
        }
        signal(SIGUSR1, SIG_IGN)
        let usr1 = DispatchSource.makeSignalSource(signal: SIGUSR1, queue: .global())
        usr1.setEventHandler {
            writeStats()
            logger.info("statistics written")
        }
        usr1.resume()
        sources.append(usr1)
        signal(SIGPIPE, SIG_IGN)

        stop.wait()
        logger.info("shutting down")
        server.shutdown()
        metricsEndpoint?.close()
        writeStats()
        for e in server.statistics() {
            logger.info("export '\(e.name)': \(e.nbd.requests) requests, \(e.controller.ioCommands) NVMe I/O commands, MMIO doorbell writes per I/O \(String(format: "%.4f", e.mmioDoorbellWritesPerIO)), interrupts per I/O \(String(format: "%.4f", e.interruptsPerIO))")
        }
        _ = sources
    }
}

/// `--listen` parsing, shared with the server.
enum NBDServerAddress {
    static func parse(_ s: String) throws -> (String, Int) {
        try NBDServer.parseListenAddress(s)
    }
}
