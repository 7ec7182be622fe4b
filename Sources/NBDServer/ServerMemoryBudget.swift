import ConcurrencyHelpers

/// The server-wide bound on memory held for clients: payloads of writes in
/// flight and read data from the moment its request starts until its reply has
/// been written to the socket. Every connection is also bounded by itself
/// (``ConnectionLimits/maximumInFlightBytes`` and the channel's writability),
/// but 1,024 connections whose clients do not read their replies could each
/// hold that much.
///
/// Past the capacity a connection's next read or write waits (it is not
/// failed) and the connection stops being read, until memory is given back:
/// then every waiting connection is woken to try again.
///
/// Clients that never read their replies keep what they hold for as long as
/// they stay connected, so a strict bound would let them starve every other
/// client. Hence the headroom: a connection that holds nothing may start a
/// request beyond the capacity, up to ``hardLimit`` (capacity × 1.5) — a client
/// that reads its replies holds nothing between requests, so it keeps making
/// progress beside a crowd that does not read. Only when that headroom too is
/// taken (dozens of non-reading clients each holding a maximal request) does
/// it wait like the others. A request larger than everything is granted when
/// nothing at all is held, so no request waits forever.
final class ServerMemoryBudget: Sendable {
    /// Bytes the budget grants before requests wait.
    let capacity: Int
    /// What the headroom for connections holding nothing reaches up to.
    var hardLimit: Int { capacity + capacity / 2 }
    private let state = Locked(State())

    private struct State {
        var used = 0
        var peak = 0
        var nextWaiter = 0
        var waiters: [Int: @Sendable () -> Void] = [:]
    }

    init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
    }

    /// A handle for one connection's waits.
    func makeWaiterID() -> Int {
        state.withLock { s in
            s.nextWaiter += 1
            return s.nextWaiter
        }
    }

    /// Grants `bytes`, or records `wake` to be called (on any thread) once
    /// memory is given back and returns `false`. `holdsNothing` is whether the
    /// asking connection currently holds no bytes of the budget.
    func reserve(_ bytes: Int, holdsNothing: Bool, waiter: Int, wake: @escaping @Sendable () -> Void) -> Bool {
        state.withLock { s in
            let fits =
                s.used + bytes <= capacity
                || (holdsNothing && (s.used == 0 || s.used + bytes <= hardLimit))
            guard fits else {
                s.waiters[waiter] = wake
                return false
            }
            s.used += bytes
            s.peak = max(s.peak, s.used)
            return true
        }
    }

    /// Gives `bytes` back and wakes the waiting connections.
    func release(_ bytes: Int) {
        guard bytes > 0 else { return }
        let wake = state.withLock { s -> [@Sendable () -> Void] in
            s.used -= bytes
            precondition(s.used >= 0, "memory budget released more than it granted")
            guard !s.waiters.isEmpty, s.used < capacity else { return [] }
            defer { s.waiters.removeAll(keepingCapacity: true) }
            return Array(s.waiters.values)
        }
        for w in wake { w() }
    }

    /// A closed connection stops waiting.
    func forget(_ waiter: Int) {
        _ = state.withLock { $0.waiters.removeValue(forKey: waiter) }
    }

    /// Bytes granted now, and the most ever granted at once.
    var usage: (held: Int, peak: Int) { state.withLock { ($0.used, $0.peak) } }
}
