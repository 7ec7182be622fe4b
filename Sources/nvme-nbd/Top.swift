import ArgumentParser
import Foundation
import NBDMetrics

/// `nvme-nbd top`: a live view of a server's `--metrics`, one line per export.
struct Top: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Live view of a server started with --metrics: per export IOPS, MiB/s, p50/p99 latency, MMIO doorbell writes and interrupts per NVMe I/O.",
        discussion: """
            Scrapes http://HOST:PORT/metrics every --interval seconds and prints the rates between two scrapes; \
            latency quantiles come from the histogram buckets that moved in between. On a terminal the view is \
            redrawn in place; otherwise a header and then one line per export per refresh are printed.
            """)

    @Option(
        name: .customLong("metrics"),
        help: ArgumentHelp("The server's --metrics address.", valueName: "host:port"))
    var address = MetricsEndpoint.defaultAddress.description

    @Option(name: .customLong("count"), help: "Stop after this many refreshes (default: run until interrupted).")
    var count: Int?

    @Option(name: .customLong("interval"), help: "Seconds between refreshes.")
    var interval = 1.0

    func validate() throws {
        do { _ = try MetricsAddress.parse(address) } catch { throw ValidationError(error.description) }
        if let count, count < 1 { throw ValidationError("--count \(count): at least 1") }
        guard interval >= 0.1 && interval <= 3600 else {
            throw ValidationError("--interval \(interval): accepted 0.1...3600")
        }
    }

    func run() throws {
        let target = try MetricsAddress.parse(address)
        let client = MetricsClient()
        defer { client.close() }
        let terminal = isatty(STDOUT_FILENO) == 1
        do {
            var previous = try ExportTotals.byExport(PrometheusText.parse(client.fetch(target)))
            var previousTime = Date()
            if !terminal { write(TopRow.header + "\n") }
            var refreshes = 0
            while count.map({ refreshes < $0 }) ?? true {
                Thread.sleep(forTimeInterval: interval)
                let current = try ExportTotals.byExport(PrometheusText.parse(client.fetch(target)))
                let now = Date()
                let seconds = now.timeIntervalSince(previousTime)
                let rows = current.keys.sorted().map { name in
                    TopRow(export: name, from: previous[name] ?? ExportTotals(), to: current[name]!, seconds: seconds)
                        .line
                }
                if terminal {
                    write(
                        "\u{1B}[H\u{1B}[2J" + "nvme-nbd top: http://\(target)/metrics, every \(interval) s\n\n"
                            + TopRow.header + "\n" + rows.joined(separator: "\n") + "\n")
                } else {
                    write(rows.map { $0 + "\n" }.joined())
                }
                previous = current
                previousTime = now
                refreshes += 1
            }
        } catch let error as MetricsError {
            FileHandle.standardError.write(Data("nvme-nbd top: \(error)\n".utf8))
            throw ExitCode(1)
        } catch let error as PrometheusTextError {
            FileHandle.standardError.write(Data("nvme-nbd top: http://\(target)/metrics: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

    private func write(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }
}
