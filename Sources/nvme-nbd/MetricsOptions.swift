import ArgumentParser
import Foundation
import Logging
import NBDMetrics
import NBDServer

/// `serve --metrics HOST:PORT`: the Prometheus endpoint (README "Metrics").
struct MetricsOptions: ParsableArguments {
    @Option(
        name: .customLong("metrics"),
        help: ArgumentHelp(
            "Serve Prometheus metrics at http://HOST:PORT/metrics (:PORT or PORT alone: 127.0.0.1; 0.0.0.0:PORT: every interface). `nvme-nbd top` reads them.",
            valueName: "host:port"))
    var address: String?

    /// The checked `--metrics` address; nil without the option.
    var endpointAddress: MetricsAddress? {
        get throws(ValidationError) {
            guard let address else { return nil }
            do { return try MetricsAddress.parse(address) } catch { throw ValidationError(error.description) }
        }
    }

    func validate() throws { _ = try endpointAddress }

    /// Binds the endpoint and makes its series `config`'s request observer,
    /// before the server starts; `nil` without `--metrics`.
    func start(_ config: inout NBDServer.Configuration, logger: Logger) throws -> MetricsEndpoint? {
        guard let address = try endpointAddress else { return nil }
        let metrics = ServerMetrics(exportNames: config.exports.map(\.name))
        do {
            let endpoint = try MetricsEndpoint(address: address, metrics: metrics, logger: logger)
            config.requestObserver = metrics
            FileHandle.standardError.write(Data("nvme-nbd: metrics at http://\(endpoint.boundAddress)/metrics\n".utf8))
            return endpoint
        } catch {
            FileHandle.standardError.write(Data("nvme-nbd: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
