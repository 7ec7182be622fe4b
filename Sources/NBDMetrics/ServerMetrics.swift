import ConcurrencyHelpers
import NBDProtocol
import NBDServer
import Prometheus

/// The Prometheus series of one server, per export: the request observer the
/// server reports latencies to, and the source of `/metrics`.
///
/// Built from the export names before the server starts (the server needs its
/// observer at start-up), then ``attach(_:)``ed to it. Counters the server
/// keeps in `CounterBlock`s are mirrored at scrape time, under this object's
/// lock (``ExportMetrics``); only the latency histogram and the count behind
/// the in-flight gauge are recorded per request.
public final class ServerMetrics: NBDRequestObserver {
    /// The registry the series live in (not the process-wide default, so several
    /// servers in one process, as in tests, keep theirs apart).
    public let registry = PrometheusCollectorRegistry()
    private let exports: [ExportMetrics]
    private let state = Locked(State())

    private struct State {
        var server: NBDServer?
        var baselines: [ExportMetrics.Baseline] = []
    }

    /// Series for exports named `exportNames`, in the server's export order.
    public init(exportNames: [String]) {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = [
            MetricSeries.latency: MetricSeries.latencyBucketNanoseconds.map { Duration.nanoseconds($0) }
        ]
        exports = exportNames.map { ExportMetrics(name: $0, factory: factory) }
    }

    /// Starts mirroring `server`'s counters (its exports must be the ones named
    /// at ``init(exportNames:)``, in that order).
    public func attach(_ server: NBDServer) {
        precondition(server.exports.map(\.spec.name) == exports.map(\.name), "metrics built for other exports")
        state.withLock {
            $0.server = server
            $0.baselines = exports.map { _ in ExportMetrics.Baseline() }
        }
    }

    public func requestAnswered(export: Int, type: NBDCommandType, nanoseconds: UInt64) {
        guard export < exports.count else { return }
        exports[export].answered(type: type.rawValue, nanoseconds: nanoseconds)
    }

    /// Brings every mirrored series up to date and renders the registry in the
    /// Prometheus text format (0.0.4), with `# HELP` lines.
    public func scrape() -> String {
        state.withLock { s in
            guard let server = s.server else { return }
            for (i, export) in server.exports.enumerated() where i < exports.count {
                let answered = exports[i].answered.load(ordering: .relaxed)
                s.baselines[i] = exports[i].mirror(export.snapshot(), answeredBefore: answered, from: s.baselines[i])
            }
        }
        return Self.addingHelp(to: registry.emitToString())
    }

    /// The registry's text with a `# HELP` line before each `# TYPE` line of a
    /// known series (swift-metrics handles carry no help text).
    static func addingHelp(to text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count + 2048)
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("# TYPE "), let name = line.dropFirst(7).split(separator: " ").first,
                let help = MetricSeries.help[String(name)]
            {
                out += "# HELP \(name) \(help)\n"
            }
            out += line
            out += "\n"
        }
        return out
    }
}
