/// What `nvme-nbd top` reads of one export from a scrape: running totals.
public struct ExportTotals: Hashable, Sendable {
    public var requests = 0.0
    public var bytes = 0.0
    /// The latency histogram summed over request types.
    public var latency: HistogramBuckets = [:]
    public var mmioDoorbellWrites = 0.0
    public var interrupts = 0.0
    public var ioCommands = 0.0
    public var shadowDoorbells: Bool?

    public init() {}

    /// Every export's totals in `scrape`, by export name.
    public static func byExport(_ scrape: PrometheusScrape) -> [String: ExportTotals] {
        var out: [String: ExportTotals] = [:]
        var buckets: [String: HistogramBuckets] = [:]
        for s in scrape.samples {
            guard let export = s.labels["export"] else { continue }
            var t = out[export] ?? ExportTotals()
            switch s.name {
            case MetricSeries.requests: t.requests += s.value
            case MetricSeries.bytesRead, MetricSeries.bytesWritten: t.bytes += s.value
            case MetricSeries.mmioDoorbellWrites: t.mmioDoorbellWrites += s.value
            case MetricSeries.interrupts: t.interrupts += s.value
            case MetricSeries.ioCommands: t.ioCommands += s.value
            case MetricSeries.shadowDoorbells: t.shadowDoorbells = s.value != 0
            case MetricSeries.latency + "_bucket":
                if let le = s.labels["le"], let bound = le == "+Inf" ? .infinity : Double(le) {
                    buckets[export, default: [:]][bound, default: 0] += s.value
                }
            default: break
            }
            out[export] = t
        }
        for (export, b) in buckets {
            out[export]?.latency = b
        }
        return out
    }
}

/// One line of `nvme-nbd top`: an export's rates between two scrapes.
public struct TopRow: Hashable, Sendable {
    public var export: String
    public var iops: Double
    public var mibPerSecond: Double
    /// Latency quantiles in seconds (nil: nothing answered in the interval).
    public var p50: Double?
    public var p99: Double?
    /// MMIO doorbell writes and interrupts per NVMe I/O command (nil: no I/O).
    public var mmioPerIO: Double?
    public var interruptsPerIO: Double?
    public var shadowDoorbells: Bool?

    /// The rates from `earlier` to `later`, `seconds` apart.
    public init(export: String, from earlier: ExportTotals, to later: ExportTotals, seconds: Double) {
        self.export = export
        let dt = max(seconds, 1e-9)
        iops = max(0, later.requests - earlier.requests) / dt
        mibPerSecond = max(0, later.bytes - earlier.bytes) / dt / 1_048_576
        let latency = HistogramQuantile.delta(later.latency, minus: earlier.latency)
        p50 = HistogramQuantile.quantile(0.5, latency)
        p99 = HistogramQuantile.quantile(0.99, latency)
        let io = later.ioCommands - earlier.ioCommands
        mmioPerIO = io > 0 ? max(0, later.mmioDoorbellWrites - earlier.mmioDoorbellWrites) / io : nil
        interruptsPerIO = io > 0 ? max(0, later.interrupts - earlier.interrupts) / io : nil
        shadowDoorbells = later.shadowDoorbells
    }

    /// The column titles, aligned with ``line``.
    public static let header =
        pad("EXPORT", 16) + lpad("IOPS", 10) + lpad("MiB/s", 10) + lpad("p50 us", 10)
        + lpad("p99 us", 10) + lpad("MMIO/IO", 9) + lpad("IRQ/IO", 9) + lpad("SHADOW", 8)

    /// The row as text: rates to one decimal, latencies in microseconds, `-` for none.
    public var line: String {
        let name = export.isEmpty ? "\"\"" : export
        return Self.pad(name, 16) + Self.lpad(Self.fixed(iops, 0), 10) + Self.lpad(Self.fixed(mibPerSecond, 1), 10)
            + Self.lpad(p50.map { Self.fixed($0 * 1e6, 0) } ?? "-", 10)
            + Self.lpad(p99.map { Self.fixed($0 * 1e6, 0) } ?? "-", 10)
            + Self.lpad(mmioPerIO.map { Self.fixed($0, 3) } ?? "-", 9)
            + Self.lpad(interruptsPerIO.map { Self.fixed($0, 3) } ?? "-", 9)
            + Self.lpad(shadowDoorbells.map { $0 ? "on" : "off" } ?? "-", 8)
    }

    static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
    }

    static func lpad(_ s: String, _ width: Int) -> String {
        s.count >= width ? " " + s : String(repeating: " ", count: width - s.count) + s
    }

    /// `value` with `digits` decimals (no Foundation formatting).
    static func fixed(_ value: Double, _ digits: Int) -> String {
        guard value.isFinite else { return "-" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let scaled = (abs(value) * scale).rounded()
        guard scaled < 9e15 else { return "\(value)" }
        let n = Int64(scaled)
        let whole = n / Int64(scale)
        var text = (value < 0 && n != 0 ? "-" : "") + String(whole)
        if digits > 0 {
            let frac = String(n % Int64(scale))
            text += "." + String(repeating: "0", count: digits - frac.count) + frac
        }
        return text
    }
}
