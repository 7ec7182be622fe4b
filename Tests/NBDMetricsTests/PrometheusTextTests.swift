import NBDMetrics
import Testing

/// The text-format parser on byte vectors: what the exporter writes, what
/// other exporters write, and what must be refused with the right line.
@Suite struct PrometheusTextTests {
    private func parse(_ bytes: [UInt8]) throws -> PrometheusScrape { try PrometheusText.parse(bytes) }

    @Test func samplesWithAndWithoutLabels() throws {
        let text = Array("# HELP x_total Things.\n# TYPE x_total counter\nx_total 42\ny{a=\"1\",b=\"two\"} 0.5\n".utf8)
        let s = try parse(text)
        #expect(s.types == ["x_total": "counter"])
        #expect(
            s.samples == [
                PrometheusSample(name: "x_total", value: 42),
                PrometheusSample(name: "y", labels: ["a": "1", "b": "two"], value: 0.5),
            ])
    }

    @Test func histogramAsSwiftPrometheusWritesIt() throws {
        let text = """
            # TYPE nvme_nbd_request_duration_seconds histogram
            nvme_nbd_request_duration_seconds_bucket{export="",type="read",le="0.00001"} 3
            nvme_nbd_request_duration_seconds_bucket{export="",type="read",le="+Inf"} 7
            nvme_nbd_request_duration_seconds_sum{export="",type="read"} 0.000123
            nvme_nbd_request_duration_seconds_count{export="",type="read"} 7

            """
        let s = try PrometheusText.parse(text)
        #expect(s.types["nvme_nbd_request_duration_seconds"] == "histogram")
        #expect(s.samples.count == 4)
        #expect(s.samples[0].labels == ["export": "", "type": "read", "le": "0.00001"])
        #expect(s.samples[1].labels["le"] == "+Inf")
        #expect(s.samples[2].value == 0.000123)
        #expect(s.samples(MetricSeries.latency + "_count", matching: ["type": "read"]).map(\.value) == [7])
    }

    @Test func escapesInLabelValues() throws {
        // x{p="a\\b\"c\nd"} 1
        let bytes: [UInt8] =
            Array("x{p=\"a".utf8) + [0x5C, 0x5C] + Array("b".utf8) + [0x5C, 0x22] + Array("c".utf8)
            + [0x5C, 0x6E] + Array("d\"} 1\n".utf8)
        let s = try parse(bytes)
        #expect(s.samples.first?.labels["p"] == "a\\b\"c\nd")
    }

    @Test func specialValuesTimestampsBlanksAndCRLF() throws {
        let s = try parse(
            Array("a +Inf\r\nb -Inf 1700000000000\r\n\r\n  # just a comment\nc NaN\nd{} 1e3\ne\t2\n".utf8))
        #expect(s.samples.map(\.name) == ["a", "b", "c", "d", "e"])
        #expect(s.samples[0].value == .infinity)
        #expect(s.samples[1].value == -.infinity)
        #expect(s.samples[2].value.isNaN)
        #expect(s.samples[3].value == 1000)
        #expect(s.samples[4].value == 2)
    }

    @Test func utf8LabelValue() throws {
        let s = try parse(Array("x{export=\"disque-é\"} 1\n".utf8))
        #expect(s.samples.first?.labels["export"] == "disque-é")
    }

    @Test(arguments: [
        ("x\n", 1, "no value"),
        ("ok 1\nx{a=\"1\" 2\n", 2, "expected ',' or '}'"),
        ("x{a=\"1} 2\n", 1, "unterminated value"),
        ("x{a=\"\\q\"} 2\n", 1, "unknown escape"),
        ("x{a=1} 2\n", 1, "expected a quoted value"),
        ("x{a=\"1\",a=\"2\"} 2\n", 1, "given twice"),
        ("x one\n", 1, "is not a number"),
        ("x inf\n", 1, "is not a number"),
        ("x 1 2 3\n", 1, "unexpected text"),
        ("x 1 1.5\n", 1, "timestamp"),
        ("# TYPE x countr\n", 1, "unknown metric type"),
        ("9x 1\n", 1, "expected a metric name"),
    ])
    func refusals(text: String, line: Int, problem: String) {
        #expect {
            try PrometheusText.parse(Array(text.utf8))
        } throws: { error in
            guard let e = error as? PrometheusTextError else { return false }
            return e.line == line && e.problem.contains(problem)
        }
    }
}
