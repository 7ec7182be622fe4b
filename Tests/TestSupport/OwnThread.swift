import Foundation
import Testing

/// Blocking work on a thread of its own, which async code waits for without
/// holding a thread of Swift's cooperative pool.
///
/// The pool has one thread per core (two here). A test that blocks one of them
/// for a minute — sockets, `usleep` polling, a long synchronous loop — starves
/// every async test running beside it: their timeouts fire while they never ran
/// (CI, ThreadSanitizer pass: a driver test "waited" 600 s behind the
/// memory-budget test). The body must not call `#expect` (issues are attributed
/// through task-locals a plain thread does not have): it returns what it saw, and
/// the test checks that.
///
/// The thread starts at once; `finished` tells without waiting whether it is done,
/// and `value(timeoutSeconds:)` waits for it, bounded. Waiters are resumed when the
/// body returns: nothing polls.
public final class OwnThread<T: Sendable>: Sendable {
    private struct State: Sendable {
        var result: T?
        var waiters: [Int: CheckedContinuation<T?, Never>] = [:]
        var cancelled: Set<Int> = []
        var nextWaiter = 0
    }
    private let state = Shared(State())

    public init(stackBytes: Int = 4 << 20, _ body: @escaping @Sendable () -> T) {
        let thread = Thread { [state] in
            let r = body()
            let waiters = state.withLock { s in
                s.result = r
                defer { s.waiters = [:] }
                return s.waiters.values
            }
            for w in waiters { w.resume(returning: r) }
        }
        thread.stackSize = stackBytes
        thread.start()
    }

    /// What the body returned, or nil while it runs.
    public var finished: T? { state.withLock { $0.result } }

    /// What the body returned, or nil when `timeoutSeconds` (stretched by
    /// ``WaitScale``) pass first.
    public func value(timeoutSeconds: Double = 30) async -> T? {
        await withTaskGroup(of: T?.self) { group in
            group.addTask { await self.wait() }
            group.addTask {
                try? await Task.sleep(for: .milliseconds(Int(WaitScale.seconds(timeoutSeconds) * 1000)))
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    /// What the body returned, unbounded; nil once the waiting task is cancelled.
    fileprivate func wait() async -> T? {
        let id = state.withLock { s in
            s.nextWaiter += 1
            return s.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<T?, Never>) in
                let now: T?? = state.withLock { s in
                    if let r = s.result { return .some(r) }
                    if s.cancelled.remove(id) != nil { return .some(nil) }
                    s.waiters[id] = c
                    return .none
                }
                if let now { c.resume(returning: now) }
            }
        } onCancel: {
            let c = state.withLock { s in
                guard let c = s.waiters.removeValue(forKey: id) else {
                    if s.result == nil { s.cancelled.insert(id) }
                    return CheckedContinuation<T?, Never>?.none
                }
                return c
            }
            c?.resume(returning: nil)
        }
    }
}

/// Runs blocking `body` on a thread of its own (``OwnThread``) and returns what
/// it returned (or throws what it threw), without holding a pool thread while it
/// runs. The wait is not bounded here: the test's time limit is the hang guard.
public func onOwnThread<T: Sendable>(
    stackBytes: Int = 4 << 20,
    _ body: @escaping @Sendable () throws -> T
) async throws -> T {
    let thread = OwnThread(stackBytes: stackBytes) { Result { try body() } }
    guard let result = await thread.wait() else { throw CancellationError() }
    return try result.get()
}

/// Runs a long synchronous check on a thread of its own (``onOwnThread(stackBytes:_:)``),
/// so that the two threads of the cooperative pool stay free for the async tests
/// running beside it, then records what `body` found as issues where it checked.
public func checkOnOwnThread(_ body: @escaping @Sendable (inout Findings) throws -> Void) async throws {
    let (findings, outcome) = try await onOwnThread { () -> (Findings, Result<Void, any Error>) in
        var findings = Findings()
        let outcome = Result { try body(&findings) }
        return (findings, outcome)
    }
    findings.record()  // what was found before an error, too
    try outcome.get()
}

/// Findings gathered on a plain thread (see ``OwnThread``) and recorded as issues
/// by the test afterwards (``record()``).
public struct Findings: Sendable {
    public struct Failure: Sendable {
        public var message: String
        public var sourceLocation: SourceLocation
    }
    public private(set) var failures: [Failure] = []
    public init() {}

    /// Notes `message` unless `condition` holds.
    public mutating func check(
        _ condition: Bool, _ message: @autoclosure () -> String = "",
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        if !condition { failures.append(Failure(message: message(), sourceLocation: sourceLocation)) }
    }

    /// Notes how `actual` differs from `expected` (``byteDifference(_:_:)``), if it does:
    /// ``expectBytes(_:_:_:sourceLocation:)`` for a plain thread.
    public mutating func checkBytes(
        _ actual: [UInt8], _ expected: [UInt8], _ note: @autoclosure () -> String = "",
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        guard let difference = byteDifference(actual, expected) else { return }
        let text = note()
        check(false, "\(text.isEmpty ? "" : text + ": ")\(difference)", sourceLocation: sourceLocation)
    }

    /// Records every failure as an issue of the running test, at the place it was noted.
    public func record() {
        for f in failures { Issue.record(Comment(rawValue: f.message), sourceLocation: f.sourceLocation) }
    }
}
