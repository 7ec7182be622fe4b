import ConcurrencyHelpers
import NBDProtocol

/// Sees every request the server answers, for latency metrics
/// (``NBDServer/Configuration/requestObserver``). The server keeps no such
/// observer unless one is configured, so without metrics the request path only
/// tests one optional.
///
/// Called on the connection's event loop, once per answered request: it must
/// be cheap and safe from several loops at once.
public protocol NBDRequestObserver: Sendable {
    /// A request of `type` on export number `export` (its index in
    /// ``NBDServer/exports``) was answered `nanoseconds` after the server began
    /// carrying it out. Requests refused before any work (validation, shutdown)
    /// are not reported: they are counted in ``NBDCounter/errors`` only.
    func requestAnswered(export: Int, type: NBDCommandType, nanoseconds: UInt64)
}

/// One connection's request clock for an ``NBDRequestObserver``: when each
/// request started (by cookie) and, once answered, how long it took — one
/// monotonic timestamp at each end and one observer call per request.
/// Touched only on the connection's event loop.
final class RequestTiming {
    let observer: any NBDRequestObserver
    let export: Int
    /// Start times by cookie; `count` keeps a cookie a client reuses while it is
    /// still in flight balanced (each answer is reported, timed from the first).
    private var started: [UInt64: (nanoseconds: UInt64, count: Int)] = [:]

    init(observer: any NBDRequestObserver, export: Int) {
        self.observer = observer
        self.export = export
        started.reserveCapacity(256)
    }

    /// The executor is about to carry out `r`.
    func start(_ r: NBDRequest) {
        let now = MonotonicClock.nanoseconds()
        if let s = started[r.cookie] {
            started[r.cookie] = (s.nanoseconds, s.count + 1)
        } else {
            started[r.cookie] = (now, 1)
        }
    }

    /// `r`'s whole reply has been queued.
    func finish(_ r: NBDRequest) {
        guard let s = started[r.cookie] else { return }
        if s.count > 1 {
            started[r.cookie] = (s.nanoseconds, s.count - 1)
        } else {
            started[r.cookie] = nil
        }
        let now = MonotonicClock.nanoseconds()
        observer.requestAnswered(export: export, type: r.type, nanoseconds: now &- s.nanoseconds)
    }
}
