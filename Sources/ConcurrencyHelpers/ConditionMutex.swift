#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A POSIX mutex with a fixed number of condition variables sharing it: the one
/// blocking primitive of the emulation. The controller thread parks on it, a trap
/// (an MMIO write) hands its register value over through it, and interrupt
/// threads sleep on it.
///
/// Invariants: `mutex` and `conditions` point at initialised pthread objects that
/// live exactly as long as this object (allocated in `init`, destroyed in
/// `deinit`) and are never moved (they are heap cells, not Swift stored values, so
/// pthread's no-move requirement holds). Callers pair every ``lock()`` with one
/// ``unlock()`` on the same thread; ``wait(_:)`` is only called with the lock held.
public final class ConditionMutex: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let conditions: UnsafeMutablePointer<pthread_cond_t>
    private let conditionCount: Int

    /// - Parameter conditions: how many condition variables share the mutex.
    public init(conditions: Int = 1) {
        precondition(conditions >= 1)
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        self.conditions = .allocate(capacity: conditions)
        conditionCount = conditions
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        #if os(Linux)
        // Timed waits measure a monotonic clock, immune to wall-clock steps.
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        #endif
        for i in 0..<conditions {
            (self.conditions + i).initialize(to: pthread_cond_t())
            pthread_cond_init(self.conditions + i, &attributes)
        }
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        for i in 0..<conditionCount { pthread_cond_destroy(conditions + i) }
        conditions.deinitialize(count: conditionCount)
        conditions.deallocate()
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    @inline(__always) public func lock() { pthread_mutex_lock(mutex) }
    @inline(__always) public func unlock() { pthread_mutex_unlock(mutex) }

    /// Runs `body` with the lock held.
    @inline(__always)
    public func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        lock()
        defer { unlock() }
        return try body()
    }

    /// Atomically releases the lock and sleeps on condition `index` until signalled
    /// (spurious wake-ups are possible: callers re-check their predicate).
    @inline(__always)
    public func wait(_ index: Int = 0) {
        pthread_cond_wait(conditions + index, mutex)
    }

    /// As ``wait(_:)`` but gives up at `deadline` (a ``MonotonicClock`` reading in
    /// nanoseconds). Returns `false` once the deadline has passed.
    public func wait(_ index: Int = 0, until deadline: UInt64) -> Bool {
        #if os(Linux)
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        return pthread_cond_timedwait(conditions + index, mutex, &ts) != ETIMEDOUT
        #else
        let now = MonotonicClock.nanoseconds()
        guard deadline > now else { return false }
        var ts = timespec(tv_sec: Int((deadline - now) / 1_000_000_000), tv_nsec: Int((deadline - now) % 1_000_000_000))
        return pthread_cond_timedwait_relative_np(conditions + index, mutex, &ts) != ETIMEDOUT
        #endif
    }

    @inline(__always) public func signal(_ index: Int = 0) { pthread_cond_signal(conditions + index) }
    @inline(__always) public func broadcast(_ index: Int = 0) { pthread_cond_broadcast(conditions + index) }
}

/// Nanoseconds of `CLOCK_MONOTONIC`, the clock ``ConditionMutex`` deadlines use.
public enum MonotonicClock {
    @inline(__always)
    public static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// A deadline `milliseconds` from now.
    public static func deadline(afterMilliseconds milliseconds: Int) -> UInt64 {
        nanoseconds() + UInt64(max(0, milliseconds)) * 1_000_000
    }
}
