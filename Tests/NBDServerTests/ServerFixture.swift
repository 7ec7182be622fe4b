import BlockBackends
import CNBD
import ConcurrencyHelpers
import DMA
import Foundation
import Logging
import NBDServer
import Synchronization
import TestSupport
import Testing

/// How a test reaches the server.
enum Transport: String, CaseIterable, Sendable, CustomStringConvertible {
    case tcp, unix
    var description: String { rawValue }
}

/// Doorbell mode of every export's emulated controller.
enum Doorbells: String, CaseIterable, Sendable, CustomStringConvertible {
    case shadow, mmio
    var description: String { rawValue }
    var shadowDoorbells: Bool { self == .shadow }
}

/// An in-process ``NBDServer`` on an ephemeral TCP port and a Unix socket in a
/// fresh temporary directory; ``stop()`` shuts it down and removes the directory.
/// `@unchecked Sendable`: everything is immutable but `stopped`, which is locked
/// (a test may stop the server from another thread).
final class ServerFixture: @unchecked Sendable {
    /// 64 MiB of memory, LBA 512, named "".
    static let defaultExport = ExportSpec(name: "", size: 64 << 20, blockSize: 512)

    let server: NBDServer
    let port: Int
    let unixPath: String
    let directory: String
    private let stopped = Shared(false)

    init(
        exports: [ExportSpec] = [ServerFixture.defaultExport], doorbells: Doorbells = .shadow, queues: Int = 1,
        configure: (inout NBDServer.Configuration) -> Void = { _ in }
    ) throws {
        directory = try makeTemporaryDirectory(under: "/tmp", prefix: "nbdsrv")
        unixPath = directory + "/nbd.sock"
        var config = NBDServer.Configuration()
        config.tcp = ["127.0.0.1:0"]
        config.unix = [unixPath]
        config.exports = exports
        config.queues = queues
        config.exportOptions.shadowDoorbells = doorbells.shadowDoorbells
        config.exportOptions.hostMemoryBytes = 512 << 20
        config.limits.handshakeTimeoutSeconds = 20
        configure(&config)
        let logger = Logger(label: "nbd-test", factory: { _ in SwiftLogNoOpLogHandler() })
        do {
            server = try NBDServer(configuration: config, logger: logger)
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
        // "[IPv4]127.0.0.1/127.0.0.1:41234": the port is after the last colon.
        guard let tcp = server.boundAddresses.first(where: { !$0.hasPrefix("unix:") }),
            let colon = tcp.lastIndex(of: ":"), let p = Int(tcp[tcp.index(after: colon)...]), p > 0
        else {
            server.shutdown(graceSeconds: 1)
            throw FixtureError("no TCP port in \(server.boundAddresses)")
        }
        port = p
    }

    deinit { stop() }

    /// Shuts the server down (idempotent) and removes the temporary directory.
    func stop(graceSeconds: Int = 5) {
        let first = stopped.withLock { s in
            defer { s = true }
            return !s
        }
        guard first else { return }
        server.shutdown(graceSeconds: graceSeconds)
        try? FileManager.default.removeItem(atPath: directory)
    }

    func uri(export: String) -> String { "nbd://127.0.0.1:\(port)/\(export)" }

    /// A connected libnbd handle. `metaContext` asks for `base:allocation`;
    /// `strict: false` lets libnbd send what it would otherwise refuse locally;
    /// `optMode` stops it in the option phase (``NBDClient/Settings``).
    func client(
        _ transport: Transport, export: String = "", structured: Bool = true, metaContext: Bool = true,
        strict: Bool = true, fullInfo: Bool = false, optMode: Bool = false
    ) throws -> NBDClient {
        let c = try NBDClient(
            .init(
                structuredReplies: structured, metaContexts: metaContext ? ["base:allocation"] : [],
                strictMode: strict ? nil : 0, fullInfo: fullInfo, optMode: optMode))
        switch transport {
        case .tcp: try c.connect(uri: uri(export: export))
        case .unix: try c.connect(unix: unixPath, export: export)
        }
        return c
    }

    /// A raw socket at the start of the handshake (greeting not yet read).
    func raw(_ transport: Transport) throws -> RawClient {
        switch transport {
        case .tcp: try RawClient(tcpPort: port)
        case .unix: try RawClient(unixPath: unixPath)
        }
    }

    func statistics(export: String = "") -> ExportStatistics {
        server.statistics().first { $0.name == export }!
    }

    /// DMA pages the export's host memory has handed out (queues, PRP lists and
    /// request buffers): back at its idle value once no request is in flight.
    func dmaPagesInUse(export: String = "") -> Int {
        server.exports.first { $0.spec.name == export }!.memory.allocatedPageCount
    }

    /// Requests the export answered with an error so far (proves an error came
    /// from the server rather than from libnbd's own checks).
    func errorCount(export: String = "") -> UInt64 { statistics(export: export).nbd[.errors] }
}

/// Runs `body` against a fresh server, always shutting it down afterwards.
func withServer<R>(
    exports: [ExportSpec] = [ServerFixture.defaultExport], doorbells: Doorbells = .shadow,
    queues: Int = 1, configure: (inout NBDServer.Configuration) -> Void = { _ in },
    _ body: (ServerFixture) throws -> R
) throws -> R {
    let fixture = try ServerFixture(exports: exports, doorbells: doorbells, queues: queues, configure: configure)
    defer { fixture.stop() }
    return try body(fixture)
}

struct FixtureError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// A local model of the export's bytes, to compare whole regions against.
struct Shadow {
    var bytes: [UInt8]
    init(size: Int) { bytes = [UInt8](repeating: 0, count: size) }
    mutating func write(_ data: [UInt8], at offset: Int) {
        bytes.replaceSubrange(offset..<(offset + data.count), with: data)
    }
    mutating func zero(_ count: Int, at offset: Int) {
        bytes.replaceSubrange(offset..<(offset + count), with: repeatElement(0, count: count))
    }
    func slice(_ offset: Int, _ count: Int) -> [UInt8] { Array(bytes[offset..<(offset + count)]) }
}

/// Runs `body` until it returns true or `seconds` (stretched by ``WaitScale``) pass.
func eventually(seconds: Double = 10, _ body: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(WaitScale.seconds(seconds))
    while Date() < deadline {
        if body() { return true }
        usleep(5_000)
    }
    return body()
}
