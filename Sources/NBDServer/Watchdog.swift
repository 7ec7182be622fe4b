import ConcurrencyHelpers
import Dispatch
import Logging
import NVMeHost

/// A one-shot flag a thread can wait on with a deadline.
final class CompletionFlag: @unchecked Sendable {
    private let lock = ConditionMutex()
    private var done = false

    func set() {
        lock.withLock {
            done = true
            lock.broadcast()
        }
    }

    /// Returns whether the flag was set before the deadline.
    @discardableResult
    func wait(milliseconds: Int) -> Bool {
        let deadline = MonotonicClock.deadline(afterMilliseconds: milliseconds)
        return lock.withLock {
            while !done {
                if !lock.wait(until: deadline) { return done }
            }
            return true
        }
    }
}

/// Linux's controller health checks, per export: a controller that reports a
/// fatal status (CSTS.CFS) or holds a command longer than the command timeout is
/// reset (`nvme_timeout` → `nvme_reset_ctrl`); the driver requeues what was in
/// flight, so requests are retried, or failed cleanly once retries run out.
final class Watchdog: @unchecked Sendable {
    private let timer: any DispatchSourceTimer
    private let driver: NVMeDriver
    private let logger: Logger
    private let export: String
    private let timeoutNanoseconds: UInt64
    /// Touched only on the timer's serial queue.
    private var resetting = false

    init(driver: NVMeDriver, export: String, intervalMilliseconds: Int, commandTimeoutSeconds: Int, logger: Logger) {
        self.driver = driver
        self.export = export
        self.logger = logger
        timeoutNanoseconds = UInt64(max(1, commandTimeoutSeconds)) * 1_000_000_000
        timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "nvme-nbd.watchdog.\(export)"))
        timer.schedule(
            deadline: .now() + .milliseconds(intervalMilliseconds), repeating: .milliseconds(intervalMilliseconds))
        timer.setEventHandler { [weak self] in self?.check() }
        timer.resume()
    }

    private func check() {
        guard !resetting else { return }
        let fatal = driver.controllerFatal
        let oldest = driver.queuePairs.map(\.oldestOutstandingNanoseconds).max() ?? 0
        guard fatal || oldest > timeoutNanoseconds else { return }
        resetting = true
        defer { resetting = false }
        logger.warning(
            "export '\(export)': \(fatal ? "controller fatal status (CSTS.CFS)" : "command outstanding for \(oldest / 1_000_000) ms"); resetting the controller"
        )
        do {
            let requeued = try driver.reset()
            logger.warning("export '\(export)': controller reset; \(requeued) commands resubmitted")
        } catch {
            logger.error("export '\(export)': controller reset failed: \(error)")
        }
    }

    func stop() {
        timer.cancel()
    }
}
