import CService

/// Signals the process cannot block or wait for.
public struct SignalWaitError: Error, Hashable, Sendable, CustomStringConvertible {
    public var signals: [Int32]
    public var error: SystemErrno
    public var description: String { "cannot block or wait for signals \(signals): \(error)" }
}

/// Signals kept pending from the first instruction until the server takes
/// them. ``block(_:)`` must run before the process starts other threads: they
/// inherit the mask, so a signal sent during start-up stays pending (never
/// delivered to a default handler that would kill the process) until a
/// signalfd(2) reads it — libdispatch's signal sources on Linux, which
/// swift-service-lifecycle's `UnixSignalsSequence` uses, read blocked signals
/// that way, including ones pending before the source was registered.
public enum SignalWaiter {
    public static func block(_ signals: [Int32]) throws(SignalWaitError) {
        let r = signals.map { Int32($0) }.withUnsafeBufferPointer {
            cservice_block_signals($0.baseAddress, Int32($0.count))
        }
        guard r == 0 else { throw SignalWaitError(signals: signals, error: SystemErrno(negated: r)) }
    }

}
