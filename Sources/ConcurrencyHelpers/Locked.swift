#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A value guarded by a POSIX mutex: the project's replacement for
/// `Synchronization.Mutex`, whose futex-based lock ThreadSanitizer cannot see on
/// Linux (every access under it was reported as a race). pthread mutexes are
/// intercepted by TSan, so `swift test --sanitize=thread` checks real races only.
///
/// Invariants: `mutex` is an initialised pthread mutex that lives as long as
/// this object and never moves (a heap cell); `value` is only touched inside
/// ``withLock(_:)`` — the reason the class may be `@unchecked Sendable`.
public final class Locked<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    public init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Runs `body` with exclusive access to the value.
    @inline(__always)
    public func withLock<T, E: Error>(_ body: (inout Value) throws(E) -> T) throws(E) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
