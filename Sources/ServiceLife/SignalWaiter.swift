import CService

/// Signals the process cannot block or wait for.
public struct SignalWaitError: Error, Hashable, Sendable, CustomStringConvertible {
    public var signals: [Int32]
    public var error: SystemErrno
    public var description: String { "cannot block or wait for signals \(signals): \(error)" }
}

/// Signals taken by a thread that waits for them (sigwait(3)) instead of by a
/// handler. ``block(_:)`` must run before the process starts other threads:
/// they inherit the mask, so a signal stays pending until ``wait(_:)`` takes
/// it. (A dispatch signal source is armed asynchronously after `resume()`; a
/// SIGTERM sent in that window, while the disposition was SIG_IGN, was lost.)
public enum SignalWaiter {
    public static func block(_ signals: [Int32]) throws(SignalWaitError) {
        let r = signals.map { Int32($0) }.withUnsafeBufferPointer {
            cservice_block_signals($0.baseAddress, Int32($0.count))
        }
        guard r == 0 else { throw SignalWaitError(signals: signals, error: SystemErrno(negated: r)) }
    }

    /// Blocks until one of `signals` (blocked with ``block(_:)``) is pending and returns it.
    public static func wait(_ signals: [Int32]) throws(SignalWaitError) -> Int32 {
        let r = signals.withUnsafeBufferPointer { cservice_wait_signal($0.baseAddress, Int32($0.count)) }
        guard r > 0 else { throw SignalWaitError(signals: signals, error: SystemErrno(negated: r)) }
        return r
    }
}
