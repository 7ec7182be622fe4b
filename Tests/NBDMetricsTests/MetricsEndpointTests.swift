import Logging
import NBDMetrics
import NBDProtocol
import Testing

/// The HTTP endpoint and the client `nvme-nbd top` uses, against each other
/// over loopback: status codes, and a histogram that counts what was observed.
@Suite struct MetricsEndpointTests {
    @Test func servesMetricsAnd404And405() throws {
        let metrics = ServerMetrics(exportNames: ["", "disk"])
        let endpoint = try MetricsEndpoint(
            address: MetricsAddress(host: "127.0.0.1", port: 0), metrics: metrics,
            logger: Logger(label: "test"))
        defer { endpoint.close() }
        #expect(endpoint.boundAddress.port != 0)
        for _ in 0..<7 { metrics.requestAnswered(export: 1, type: .read, nanoseconds: 30_000) }
        metrics.requestAnswered(export: 1, type: .write, nanoseconds: 2_000_000_000)
        metrics.requestAnswered(export: 0, type: .flush, nanoseconds: 5)

        let client = MetricsClient()
        defer { client.close() }
        let scrape = try PrometheusText.parse(client.fetch(endpoint.boundAddress))
        #expect(scrape.types[MetricSeries.latency] == "histogram")
        func value(_ name: String, _ labels: [String: String]) -> Double? {
            let s = scrape.samples(name, matching: labels)
            return s.count == 1 ? s[0].value : nil
        }
        #expect(value(MetricSeries.latency + "_count", ["export": "disk", "type": "read"]) == 7)
        #expect(value(MetricSeries.latency + "_bucket", ["export": "disk", "type": "read", "le": "0.000025"]) == 0)
        #expect(value(MetricSeries.latency + "_bucket", ["export": "disk", "type": "read", "le": "0.00005"]) == 7)
        #expect(value(MetricSeries.latency + "_bucket", ["export": "disk", "type": "write", "le": "1.0"]) == 0)
        #expect(value(MetricSeries.latency + "_bucket", ["export": "disk", "type": "write", "le": "+Inf"]) == 1)
        #expect(value(MetricSeries.latency + "_count", ["export": "", "type": "flush"]) == 1)
        // Every series named in MetricSeries.help is there with its HELP text,
        // for both exports (the counters are zero until a server is attached).
        let text = try client.fetch(endpoint.boundAddress)
        for (name, help) in MetricSeries.help {
            #expect(text.contains("# HELP \(name) \(help)\n"), "\(name)")
            #expect(scrape.types[name] != nil, "\(name)")
        }
        #expect(value(MetricSeries.requests, ["export": "disk", "type": "block_status"]) == 0)

        let elsewhere = MetricsAddress(host: "127.0.0.1", port: endpoint.boundAddress.port)
        #expect(throws: MetricsError.httpStatus(address: elsewhere.description, status: 404)) {
            try client.fetch(elsewhere, path: "/")
        }
        #expect(throws: MetricsError.httpStatus(address: elsewhere.description, status: 405)) {
            try client.fetch(elsewhere, method: "POST")
        }
    }

    @Test func connectionRefusedIsATypedError() throws {
        // Bind and close to find a port nobody listens on.
        let metrics = ServerMetrics(exportNames: [""])
        let endpoint = try MetricsEndpoint(
            address: MetricsAddress(host: "127.0.0.1", port: 0), metrics: metrics,
            logger: Logger(label: "test"))
        let address = endpoint.boundAddress
        endpoint.close()
        let client = MetricsClient()
        defer { client.close() }
        #expect {
            try client.fetch(address, timeoutSeconds: 2)
        } throws: { error in
            if case .connectionFailed(let a, _) = error as? MetricsError { return a == address.description }
            return false
        }
    }

    @Test func addressForms() throws {
        #expect(try MetricsAddress.parse("0.0.0.0:9100") == MetricsAddress(host: "0.0.0.0", port: 9100))
        #expect(try MetricsAddress.parse(":9100") == MetricsAddress(host: "127.0.0.1", port: 9100))
        #expect(try MetricsAddress.parse("9100") == MetricsAddress(host: "127.0.0.1", port: 9100))
        #expect(try MetricsAddress.parse("[::1]:9100") == MetricsAddress(host: "::1", port: 9100))
        #expect(try MetricsAddress.parse("[::1]:9100").description == "[::1]:9100")
        for bad in ["localhost", "host:99999", "[::1]9100", "[::1", "", "h:x"] {
            #expect(throws: MetricsError.self) { try MetricsAddress.parse(bad) }
        }
    }
}
