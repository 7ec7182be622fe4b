import ConcurrencyHelpers
import CoreMetrics
import NBDServer
import NVMeController
import NVMeHost
import Prometheus
import Synchronization

/// One export's series, created through swift-metrics on a
/// ``PrometheusMetricsFactory``.
///
/// Two kinds of recording:
/// - The latency histogram and the count of answered requests are recorded per
///   request, by ``ServerMetrics/requestAnswered(export:type:nanoseconds:)``.
/// - Every counter the server already keeps in its `CounterBlock`s (NBD,
///   controller and host counters) gets no second increment on the request
///   path: ``mirror(_:)`` adds to each Prometheus counter the change of its
///   source since the previous scrape, and sets the gauges. The caller holds
///   ``ServerMetrics``' lock, so scrapes running at once never count a delta twice.
final class ExportMetrics: Sendable {
    let name: String
    /// Latency histograms indexed by `NBDCommandType.rawValue` (nil: not timed).
    private let latency: [CoreMetrics.Timer?]
    /// Requests answered so far (for ``MetricSeries/inFlight``).
    let answered = Atomic<UInt64>(0)

    private let requests: [CoreMetrics.Counter]
    private let bytesRead, bytesWritten, errors: CoreMetrics.Counter
    private let mmioSQ, mmioCQ, shadowSQ, shadowCQ: CoreMetrics.Counter
    private let eventIndex, interrupts, parks, wakeups, ioCommands: CoreMetrics.Counter
    private let inFlight, connections, shadowDoorbells: CoreMetrics.Gauge

    init(name: String, factory: PrometheusMetricsFactory) {
        self.name = name
        let export = [("export", name)]
        func counter(_ series: String, _ extra: [(String, String)] = []) -> CoreMetrics.Counter {
            CoreMetrics.Counter(label: series, dimensions: export + extra, factory: factory)
        }
        func gauge(_ series: String) -> CoreMetrics.Gauge {
            CoreMetrics.Gauge(label: series, dimensions: export, factory: factory)
        }
        var latency = [CoreMetrics.Timer?](repeating: nil, count: 8)
        for t in MetricSeries.requestTypes {
            latency[Int(t.type.rawValue)] = CoreMetrics.Timer(
                label: MetricSeries.latency, dimensions: export + [("type", t.label)], factory: factory)
        }
        self.latency = latency
        requests = MetricSeries.requestTypes.map { counter(MetricSeries.requests, [("type", $0.label)]) }
        bytesRead = counter(MetricSeries.bytesRead)
        bytesWritten = counter(MetricSeries.bytesWritten)
        errors = counter(MetricSeries.errors)
        mmioSQ = counter(MetricSeries.mmioDoorbellWrites, [("doorbell", "sq_tail")])
        mmioCQ = counter(MetricSeries.mmioDoorbellWrites, [("doorbell", "cq_head")])
        shadowSQ = counter(MetricSeries.shadowDoorbellWrites, [("doorbell", "sq_tail")])
        shadowCQ = counter(MetricSeries.shadowDoorbellWrites, [("doorbell", "cq_head")])
        eventIndex = counter(MetricSeries.eventIndexWrites)
        interrupts = counter(MetricSeries.interrupts)
        parks = counter(MetricSeries.parks)
        wakeups = counter(MetricSeries.wakeups)
        ioCommands = counter(MetricSeries.ioCommands)
        inFlight = gauge(MetricSeries.inFlight)
        connections = gauge(MetricSeries.connections)
        shadowDoorbells = gauge(MetricSeries.shadowDoorbells)
    }

    /// The per-request record: one histogram observation and one relaxed add.
    @inline(__always)
    func answered(type: UInt16, nanoseconds: UInt64) {
        let i = Int(type)
        if i < latency.count, let timer = latency[i] {
            timer.recordNanoseconds(Int64(clamping: nanoseconds))
        }
        answered.add(1, ordering: .relaxed)
    }

    /// The counters at the previous scrape (zero before the first).
    struct Baseline {
        var nbd = NBDStatistics()
        var controller = ControllerStatistics()
        var host = HostStatistics()
    }

    /// Brings the mirrored series up to `now` from `baseline`, and returns the
    /// new baseline. `answeredBefore` was loaded before `now` was taken, so
    /// requests started (counted in `now`) are never fewer than those answered.
    func mirror(_ now: ExportStatistics, answeredBefore: UInt64, from baseline: Baseline) -> Baseline {
        let nbd = now.nbd - baseline.nbd
        let controller = now.controller - baseline.controller
        let host = now.host - baseline.host
        for (i, t) in MetricSeries.requestTypes.enumerated() { add(requests[i], nbd[t.counter]) }
        add(bytesRead, nbd[.bytesRead])
        add(bytesWritten, nbd[.bytesWritten])
        add(errors, nbd[.errors])
        add(mmioSQ, controller[.mmioSQTailDoorbellWrites])
        add(mmioCQ, controller[.mmioCQHeadDoorbellWrites])
        add(shadowSQ, host[.sqShadowDoorbellWrites])
        add(shadowCQ, host[.cqShadowDoorbellWrites])
        add(eventIndex, controller[.eventIndexWrites])
        add(interrupts, controller[.interruptsRaised])
        add(parks, controller[.parks])
        add(wakeups, controller[.wakeups])
        add(ioCommands, controller.ioCommands)
        let started = now.nbd.requests
        inFlight.record(started > answeredBefore ? Int64(clamping: started - answeredBefore) : 0)
        connections.record(Int64(clamping: now.nbd[.activeConnections]))
        shadowDoorbells.record(now.shadowDoorbells ? 1 : 0)
        return Baseline(nbd: now.nbd, controller: now.controller, host: now.host)
    }

    private func add(_ counter: CoreMetrics.Counter, _ delta: UInt64) {
        // A counter block never goes backwards; a delta past Int64.max is a wrap.
        if delta > 0 && delta <= UInt64(Int64.max) { counter.increment(by: Int64(delta)) }
    }
}
