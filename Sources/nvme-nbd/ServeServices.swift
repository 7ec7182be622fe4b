import Foundation
import Logging
import NBDMetrics
import NBDServer
import ServiceLife
import ServiceLifecycle
import Synchronization
import UnixSignals

// `serve` as swift-service-lifecycle services. A `ServiceGroup` runs them; on
// graceful shutdown it stops them one at a time in reverse order, each after
// the one before has returned, which gives the README's shutdown order:
// the `--run` command (already ended), SIGUSR1 handling, the NBD server (stop
// accepting, STOPPING=1, drain, flush), the metrics endpoint.

/// Runs `work` (a blocking call: a drain, a SwiftNIO `wait()`) on a thread of
/// its own, so that it never holds one of the cooperative pool's threads.
func onOwnThread<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { (done: CheckedContinuation<T, Never>) in
        Thread.detachNewThread { done.resume(returning: work()) }
    }
}

/// A resource that lives until graceful shutdown (or cancellation), then is
/// stopped by a blocking call on a thread of its own (``onOwnThread(_:)``).
struct StoppedAtShutdown: Service, CustomStringConvertible {
    let description: String
    let stopResource: @Sendable () -> Void

    func run() async {
        // Returns on graceful shutdown, throws CancellationError on cancellation: both stop it.
        try? await gracefulShutdown()
        await stop()
    }

    func stop() async { await onOwnThread(stopResource) }

    /// The NBD server. It listens before the group starts (the pid file, READY=1
    /// and `--run` need its addresses); when stopped it stops accepting, tells the
    /// service manager STOPPING=1 (sd_notify(3)), lets requests in flight finish
    /// (new ones get ESHUTDOWN) and flushes the exports.
    static func nbdServer(_ server: NBDServer, logger: Logger) -> StoppedAtShutdown {
        StoppedAtShutdown(description: "NBDServer") {
            logger.info("shutting down")
            do { try ServiceNotify.notify("STOPPING=1") } catch { logger.warning("\(error)") }
            server.shutdown()
        }
    }

    /// The `--metrics` endpoint: closed after the NBD server has drained, so the
    /// last scrape can still see the final counters.
    static func metricsEndpoint(_ endpoint: MetricsEndpoint) -> StoppedAtShutdown {
        StoppedAtShutdown(description: "MetricsEndpoint") { endpoint.close() }
    }
}

/// SIGUSR1: writes `--stats-json` without stopping, until graceful shutdown.
struct StatisticsOnSignalService: Service, CustomStringConvertible {
    let writeStatistics: @Sendable () -> Void
    let logger: Logger
    var description: String { "StatisticsOnSIGUSR1" }

    func run() async {
        for await _ in await UnixSignalsSequence(trapping: .sigusr1).cancelOnGracefulShutdown() {
            writeStatistics()
            logger.info("statistics written")
        }
    }
}

/// How a `--run` command ended, or why it never started.
enum CaptiveOutcome: Sendable {
    case exited(CaptiveExit)
    case failedToStart(String)
}

/// `--run CMD` (nbdkit-captive(1)): starts the command once every listener is
/// ready, passes SIGINT and SIGTERM on to it (the command decides when the
/// server stops, so the group has no shutdown signals of its own then) and
/// returns when it exits; configured with `.gracefullyShutdownGroup`, its end
/// starts the group's graceful shutdown. The outcome is kept for the exit status.
final class CaptiveCommandService: Service, CustomStringConvertible, Sendable {
    let command: String
    let variables: [(String, String)]
    let logger: Logger
    private let result = Mutex<CaptiveOutcome?>(nil)
    var description: String { "CaptiveCommand" }

    init(command: String, variables: [(String, String)], logger: Logger) {
        self.command = command
        self.variables = variables
        self.logger = logger
    }

    var outcome: CaptiveOutcome? { result.withLock { $0 } }

    func run() async {
        // Trapped before the command starts: a signal sent meanwhile waits, then goes to the command.
        let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm)
        let child: CaptiveCommand
        do {
            child = try CaptiveCommand(command: command, variables: variables)
        } catch {
            result.withLock { $0 = .failedToStart("\(error)") }
            return
        }
        logger.info("--run: started process \(child.pid)")
        let exit = await withTaskGroup(of: CaptiveExit?.self) { group in
            group.addTask {
                for await signal in signals { child.forward(signal: signal.rawValue) }
                return nil
            }
            group.addTask {
                // Another service failing shuts the group down: the command is asked to end first.
                await withGracefulShutdownHandler {
                    await onOwnThread {
                        do { return try child.wait() } catch {
                            self.logger.error("\(error)")
                            return CaptiveExit(status: 1, signal: nil)
                        }
                    }
                } onGracefulShutdown: {
                    child.forward(signal: SIGTERM)
                }
            }
            let exit = await group.first { $0 != nil } ?? nil
            group.cancelAll()
            return exit ?? CaptiveExit(status: 1, signal: nil)
        }
        logger.info("--run command ended: \(exit)")
        result.withLock { $0 = .exited(exit) }
    }
}
