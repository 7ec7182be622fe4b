#if os(Linux)
import CLinuxIO
import Glibc

/// An `eventfd(2)`: how storage completions (an io_uring registered with it, or
/// worker threads) and traps wake a parked controller thread, which waits on it
/// with `poll(2)`.
///
/// Protocol (no lost wake-up): the waiter ``drain()``s, then checks every source
/// of work, then ``wait(timeoutMilliseconds:)``s; a source signals after making
/// its work visible. Work that appears before the check is seen by the check; work
/// that appears after the drain makes the descriptor readable.
public final class WakeSignal: Sendable {
    public let descriptor: CInt

    public init() throws(BackendError) {
        let fd = clinux_eventfd()
        guard fd >= 0 else { throw BackendError(.system(errno: -fd), operation: "eventfd") }
        descriptor = fd
    }

    deinit { _ = Glibc.close(descriptor) }

    /// Makes the descriptor readable (wakes a waiter, or the next one).
    public func signal() {
        // EAGAIN means the counter is saturated: readable already.
        _ = clinux_eventfd_signal(descriptor)
    }

    /// Clears it without blocking.
    public func drain() {
        _ = clinux_eventfd_drain(descriptor)
    }

    /// Waits until it is readable or `timeoutMilliseconds` passed (< 0: no limit).
    /// Returns whether it is readable.
    @discardableResult
    public func wait(timeoutMilliseconds: Int) -> Bool {
        clinux_eventfd_wait(descriptor, CInt(timeoutMilliseconds)) > 0
    }
}
#endif
