import Foundation

/// A value shared with escaping closures and other threads, behind a lock.
///
/// `NSLock` (a pthread mutex, which ThreadSanitizer sees) rather than
/// `Synchronization.Mutex` (a futex it does not): see `ConcurrencyHelpers.Locked`.
/// `@unchecked Sendable`: `stored` is only touched with `lock` held.
public final class Shared<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value

    public init(_ value: Value) { stored = value }

    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&stored)
    }

    public var value: Value { withLock { $0 } }
}
