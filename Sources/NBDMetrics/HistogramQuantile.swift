/// A cumulative histogram: the count of observations at most each upper bound
/// (`le`; `.infinity` for `+Inf`), by upper bound.
public typealias HistogramBuckets = [Double: Double]

/// Quantiles from cumulative histogram buckets, as PromQL's
/// `histogram_quantile` computes them: the rank `q × total` is located in its
/// bucket and interpolated linearly between that bucket's bounds (the first
/// bucket's lower bound is 0); a rank in the `+Inf` bucket gives the highest
/// finite bound.
public enum HistogramQuantile {
    /// The `q`-quantile (0...1) of `buckets`, or `nil` with no observations,
    /// no `+Inf` bucket or `q` outside 0...1.
    public static func quantile(_ q: Double, _ buckets: HistogramBuckets) -> Double? {
        guard (0...1).contains(q) else { return nil }
        let sorted = buckets.map { (upperBound: $0.key, count: $0.value) }.sorted { $0.upperBound < $1.upperBound }
        guard let last = sorted.last, last.upperBound == .infinity, last.count > 0 else { return nil }
        let rank = q * last.count
        var lowerBound = 0.0
        var lowerCount = 0.0
        for b in sorted {
            if b.count >= rank && b.count > lowerCount {
                guard b.upperBound.isFinite else { return lowerBound }
                return lowerBound + (b.upperBound - lowerBound) * (rank - lowerCount) / (b.count - lowerCount)
            }
            lowerBound = b.upperBound
            // Counts are cumulative; a bucket below its predecessor (a reset
            // between two scrapes) must not move the count back.
            lowerCount = max(lowerCount, b.count)
        }
        return sorted.count >= 2 ? sorted[sorted.count - 2].upperBound : nil
    }

    /// `later - earlier`, bucket by bucket (matched by upper bound): what was
    /// observed between two scrapes.
    public static func delta(_ later: HistogramBuckets, minus earlier: HistogramBuckets) -> HistogramBuckets {
        later.reduce(into: [:]) { $0[$1.key] = max(0, $1.value - (earlier[$1.key] ?? 0)) }
    }
}
