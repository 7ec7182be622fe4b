import Foundation

/// Runs blocking `body` on a thread of its own and waits for it without holding a
/// thread of Swift's cooperative pool.
///
/// The pool has one thread per core (two here). A test that blocks one of them
/// for a minute — sockets, `usleep` polling — starves every async test running
/// beside it: their timeouts fire while they never ran (CI, ThreadSanitizer pass:
/// a driver test "waited" 600 s behind the memory-budget test). `body` must not
/// call `#expect` (issues are attributed through task-locals a plain thread does
/// not have): it returns what it saw, and the test checks that.
public func onOwnThread<T: Sendable>(
    stackBytes: Int = 4 << 20,
    _ body: @escaping @Sendable () throws -> T
) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.stackSize = stackBytes
        thread.start()
    }
}

/// Findings gathered on a plain thread (see ``onOwnThread(stackBytes:_:)``) and
/// recorded as issues by the test afterwards.
public struct Findings: Sendable {
    public private(set) var failures: [String] = []
    public init() {}

    /// Notes `message` unless `condition` holds.
    public mutating func check(
        _ condition: Bool, _ message: @autoclosure () -> String = "",
        file: StaticString = #fileID, line: UInt = #line
    ) {
        if !condition { failures.append("\(file):\(line): \(message())") }
    }
}
