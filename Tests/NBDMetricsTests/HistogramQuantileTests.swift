import NBDMetrics
import Testing

/// Quantiles from cumulative buckets, checked against hand-computed values
/// (PromQL's `histogram_quantile` rules).
@Suite struct HistogramQuantileTests {
    private func buckets(_ pairs: [(Double, Double)]) -> HistogramBuckets {
        HistogramBuckets(uniqueKeysWithValues: pairs)
    }

    @Test func interpolatesInsideTheBucket() {
        // 10 in (0,1], 10 in (1,2], 20 in (2,4].
        let b = buckets([(1, 10), (2, 20), (4, 40), (.infinity, 40)])
        #expect(HistogramQuantile.quantile(0.25, b) == 1)
        #expect(HistogramQuantile.quantile(0.5, b) == 2)
        #expect(HistogramQuantile.quantile(0.75, b) == 3)
        #expect(HistogramQuantile.quantile(1, b) == 4)
        #expect(HistogramQuantile.quantile(0.125, b) == 0.5)
    }

    @Test func skipsEmptyBucketsAndTakesAnyOrder() {
        let b = buckets([(.infinity, 4), (0.001, 0), (0.0001, 0), (0.01, 4)])
        // All 4 in (0.001, 0.01]: the median is half way.
        #expect(abs(HistogramQuantile.quantile(0.5, b)! - 0.0055) < 1e-12)
    }

    @Test func rankInTheInfBucketGivesTheHighestFiniteBound() {
        let b = buckets([(1, 0), (2, 5), (.infinity, 10)])
        #expect(HistogramQuantile.quantile(0.99, b) == 2)
        #expect(HistogramQuantile.quantile(0.5, b) == 2)
        #expect(HistogramQuantile.quantile(0.2, b) == 1.4)
    }

    @Test func nothingObservedOrNoInfBucketOrBadQ() {
        #expect(HistogramQuantile.quantile(0.5, buckets([(1, 0), (.infinity, 0)])) == nil)
        #expect(HistogramQuantile.quantile(0.5, buckets([(1, 3), (2, 3)])) == nil)
        #expect(HistogramQuantile.quantile(0.5, [:]) == nil)
        #expect(HistogramQuantile.quantile(1.5, buckets([(1, 3), (.infinity, 3)])) == nil)
    }

    @Test func deltaBetweenScrapes() {
        let earlier = buckets([(1, 10), (2, 20), (.infinity, 20)])
        let later = buckets([(1, 10), (2, 30), (.infinity, 40)])
        let d = HistogramQuantile.delta(later, minus: earlier)
        #expect(d == buckets([(1, 0), (2, 10), (.infinity, 20)]))
        // 10 new in (1,2], 10 beyond 2: p50 is the top of (1,2], p99 the highest finite bound.
        #expect(HistogramQuantile.quantile(0.5, d) == 2)
        #expect(HistogramQuantile.quantile(0.99, d) == 2)
        #expect(HistogramQuantile.quantile(0.25, d) == 1.5)
    }
}
