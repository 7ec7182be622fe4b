import ConcurrencyHelpers
import DMA
import Foundation
import Logging
import NBDProtocol
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLife

/// The NBD server: listeners (TCP and Unix sockets), one SwiftNIO event loop per
/// I/O queue pair, and the exports, each with its own emulated NVMe controller.
public final class NBDServer: Sendable {
    public struct Configuration: Sendable {
        /// TCP listen addresses, "HOST:PORT" ("[::1]:10809" for IPv6).
        public var tcp: [String] = ["127.0.0.1:10809"]
        /// Unix socket paths. A path another process listens on is refused
        /// (``ListenerError/socketInUse(path:)``); a stale socket file is replaced.
        public var unix: [String] = []
        /// Listening sockets inherited through socket activation (sd_listen_fds(3)),
        /// served as they are: the server neither binds nor unlinks them.
        public var inheritedListeners: [InheritedListener] = []
        public var exports: [ExportSpec] = [.default]
        public var exportOptions = ExportOptions()
        public var limits = ConnectionLimits()
        /// Event loop threads = I/O queue pairs per export.
        public var queues = 1
        /// Told the latency of every answered request (metrics); `nil` keeps no clock.
        public var requestObserver: (any NBDRequestObserver)?
        /// `NBD_OPT_STARTTLS` (proto.md "TLS support"); nil: NOTLS mode.
        public var tls: TLSSettings?

        public init() {}
    }

    public let configuration: Configuration
    public let exports: [Export]
    private let group: MultiThreadedEventLoopGroup
    private let context: ServerContext
    private let channels: [any Channel]
    private let logger: Logger
    /// The addresses actually bound (ports resolved), for logs and tests.
    public let boundAddresses: [String]
    /// Where clients reach the server, in listener order (configured TCP
    /// listeners, Unix sockets, inherited sockets): `--run` builds its URI from these.
    public let endpoints: [ListenerEndpoint]

    /// Opens every export and binds every listener; throws a ``ServerError``
    /// naming what failed.
    public init(configuration: Configuration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        guard configuration.queues >= 1 && configuration.queues <= 256 else {
            throw ServerError("--queues \(configuration.queues): accepted 1...256")
        }
        guard !configuration.tcp.isEmpty || !configuration.unix.isEmpty || !configuration.inheritedListeners.isEmpty
        else {
            throw ServerError("nothing to listen on: give --listen HOST:PORT or --unix PATH")
        }
        // Before any export opens: a live socket means another server owns the path.
        for path in configuration.unix {
            try Self.checkUnixSocketPath(path)
        }
        var names = Set<String>()
        for e in configuration.exports where !names.insert(e.name).inserted {
            throw ServerError("export name '\(e.name)' is given twice")
        }
        // Credentials before any export opens: a missing certificate is named at once.
        var tlsContext: NIOSSLContext?
        if let tls = configuration.tls, tls.mode != .off {
            tlsContext = try tls.makeContext()
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.queues)
        self.group = group
        let loops = Array(group.makeIterator())
        var exports: [Export] = []
        do {
            for spec in configuration.exports {
                exports.append(
                    try Export(spec: spec, loops: loops, options: configuration.exportOptions, logger: logger))
                let e = exports.last!
                logger.info(
                    "\(spec.summary), \(e.size) bytes, NVMe LBA \(e.namespace.blockSize), storage \(e.controller.storageEngines.joined(separator: "+")), shadow doorbells \(e.driver.shadowDoorbellsEnabled ? "on" : "off")"
                )
            }
        } catch {
            for e in exports { e.close() }
            try? group.syncShutdownGracefully()
            throw error
        }
        self.exports = exports
        let context = ServerContext(
            exports: exports, limits: configuration.limits, tlsMode: configuration.tls?.mode ?? .off,
            tls: tlsContext, logger: logger, observer: configuration.requestObserver)
        self.context = context

        var channels: [any Channel] = []
        var bound: [String] = []
        var endpoints: [ListenerEndpoint] = []
        var boundPaths: [String] = []
        var current = ""
        do {
            for address in configuration.tcp {
                current = address
                let (host, port) = try Self.parseHostPort(address)
                let ch = try Self.bootstrap(group: group, context: context, logger: logger, tcp: true)
                    .bind(host: host, port: port).wait()
                channels.append(ch)
                bound.append(ch.localAddress.map { "\($0)" } ?? address)
                endpoints.append(.tcp(host: ch.localAddress?.ipAddress ?? host, port: ch.localAddress?.port ?? port))
            }
            for path in configuration.unix {
                current = "unix:\(path)"
                // Checked again right before binding: the window in which another
                // server could take the path is this one call.
                try Self.checkUnixSocketPath(path)
                let ch = try Self.bootstrap(group: group, context: context, logger: logger, tcp: false)
                    .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).wait()
                channels.append(ch)
                boundPaths.append(path)
                bound.append("unix:\(path)")
                endpoints.append(.unix(path: path))
            }
            for inherited in configuration.inheritedListeners {
                current = "\(inherited)"
                let ch = try Self.bootstrap(
                    group: group, context: context, logger: logger, tcp: inherited.family != .unix
                )
                .withBoundSocket(inherited.descriptor).wait()
                channels.append(ch)
                let address = ch.localAddress
                bound.append("\(inherited): \(address.map { "\($0)" } ?? "?")")
                if inherited.family == .unix {
                    endpoints.append(.unix(path: address?.pathname ?? ""))
                } else {
                    endpoints.append(.tcp(host: address?.ipAddress ?? "localhost", port: address?.port ?? 0))
                }
            }
        } catch {
            for c in channels { try? c.close().wait() }
            for path in boundPaths { try? FileManager.default.removeItem(atPath: path) }
            for e in exports { e.close() }
            try? group.syncShutdownGracefully()
            if let e = error as? ListenerError { throw e }
            throw ListenerError.cannotListen(address: current, reason: "\(error)")
        }
        self.channels = channels
        boundAddresses = bound
        self.endpoints = endpoints
    }

    /// Refuses a Unix socket path another process is listening on (binding it
    /// would unlink that server's socket and silently cut it off from new
    /// clients) and anything there that is not a socket; a stale socket file
    /// (connect(2) refused) is left for the bind to replace.
    static func checkUnixSocketPath(_ path: String) throws(ListenerError) {
        let state: UnixSocketState
        do {
            state = try UnixSocketProbe.state(of: path)
        } catch {
            throw .cannotListen(address: "unix:\(path)", reason: "\(error)")
        }
        switch state {
        case .absent, .stale: return
        case .live: throw .socketInUse(path: path)
        case .notASocket: throw .notASocket(path: path)
        }
    }

    private static func bootstrap(
        group: MultiThreadedEventLoopGroup, context: ServerContext, logger: Logger,
        tcp: Bool
    ) -> ServerBootstrap {
        var b = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            // Replies may queue up to 32 MiB (one maximum read) before the connection
            // counts as not writable and the server stops reading its requests.
            .childChannelOption(
                .writeBufferWaterMark, value: ChannelOptions.Types.WriteBufferWaterMark(low: 8 << 20, high: 32 << 20)
            )
            .childChannelOption(
                .recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 4096, initial: 65536, maximum: 1 << 20))
        // Send buffers (the kernel doubles the value). Unix sockets: 4 MiB, so a
        // 1 MiB read reply goes out in one go instead of waiting for the client to
        // drain a 200 KiB buffer several times. TCP: 512 KiB. Measured on loopback
        // (scripts/bench, 1 MiB sequential reads at QD8): 4 MiB sends 3.7-4.5 GB/s,
        // 512 KiB 6.4-7.3 GB/s; the payload is still in the cache when the
        // receiver copies it out. Setting it also turns off TCP's autotuning,
        // which measured no better than 4 MiB.
        b = b.childChannelOption(.socketOption(.so_sndbuf), value: tcp ? 512 << 10 : 4 << 20)
        if tcp {
            b = b.childChannelOption(.socketOption(.tcp_nodelay), value: 1)
        }
        return b.childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(NBDConnectionHandler(server: context, logger: logger))
            }
        }
    }

    /// Parses a `--listen` value: "HOST:PORT", "[V6ADDR]:PORT", ":PORT", "PORT"
    /// (all digits: 127.0.0.1 on that port) or "HOST" (port 10809).
    public static func parseListenAddress(_ s: String) throws -> (String, Int) { try parseHostPort(s) }

    static func parseHostPort(_ s: String) throws -> (String, Int) {
        var host: Substring
        var portText: Substring
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { throw ServerError("--listen '\(s)': missing ']'") }
            host = s[s.index(after: s.startIndex)..<close]
            let after = s[s.index(after: close)...]
            guard after.hasPrefix(":") else { throw ServerError("--listen '\(s)': expected [HOST]:PORT") }
            portText = after.dropFirst()
        } else if let colon = s.lastIndex(of: ":") {
            host = s[..<colon]
            portText = s[s.index(after: colon)...]
        } else {
            host = Substring(s)
            portText = "10809"
        }
        if host.isEmpty { host = "127.0.0.1" }
        // "--listen 10899": a port alone, on the default host.
        if !s.hasPrefix("["), !s.contains(":"), !s.isEmpty, s.allSatisfy({ $0.isASCII && $0.isNumber }) {
            host = "127.0.0.1"
            portText = Substring(s)
        }
        guard let port = Int(portText), (0...65535).contains(port) else {
            throw ServerError("--listen '\(s)': port '\(portText)' is not 0...65535 (expected HOST:PORT)")
        }
        return (String(host), port)
    }

    /// Stops accepting, lets requests in flight finish (new ones get ESHUTDOWN;
    /// idle connections linger ``ConnectionLimits/shutdownLingerMilliseconds`` for
    /// the client's NBD_CMD_DISC), waits up to `graceSeconds` for connections to
    /// drain, then flushes and shuts every export down.
    public func shutdown(graceSeconds: Int = 10) {
        context.shuttingDown.store(true, ordering: .relaxed)
        for c in channels { try? c.close().wait() }
        for notify in context.registry.all() { notify() }
        let deadline = MonotonicClock.deadline(afterMilliseconds: graceSeconds * 1000)
        while context.registry.count > 0 && MonotonicClock.nanoseconds() < deadline {
            usleep(10_000)
        }
        if context.registry.count > 0 {
            logger.warning("\(context.registry.count) connections still open after \(graceSeconds) s; closing them")
        }
        // Exports are closed while the event loops still run: every queue pair's
        // interrupt is delivered by `loop.execute { processCompletions() }`, so with
        // the loops gone the final flush never completed (each export's close then
        // waited its full 30 s timeout) and commands failed by the driver shutdown
        // never reached their connections. With the loops alive, connections that
        // outlived the grace period get their ESHUTDOWN replies before closing.
        for e in exports { e.close() }
        try? group.syncShutdownGracefully()
        // Only the sockets this server bound; inherited ones belong to whoever passed them.
        for path in configuration.unix { try? FileManager.default.removeItem(atPath: path) }
    }

    /// Every export's counters.
    public func statistics() -> [ExportStatistics] { exports.map { $0.snapshot() } }

    /// Bytes of the server-wide memory budget (``ConnectionLimits/memoryBudgetBytes``)
    /// held now by requests in flight and replies not yet written, and the most
    /// ever held at once.
    public var memoryBudgetUsage: (held: Int, peak: Int) { context.memoryBudget.usage }

    /// Writes ``statistics()`` as JSON to `path` (atomically: ``replaceFileAtomically(_:with:)``).
    public func writeStatistics(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(StatisticsFile(exports: statistics()))
        try replaceFileAtomically(path, with: Array(data))
    }

    public var connectionCount: Int { context.registry.count }
}

/// The `--stats-json` document.
public struct StatisticsFile: Codable, Sendable {
    public var exports: [ExportStatistics]
}

/// Where a listener accepts clients.
public enum ListenerEndpoint: Sendable, Hashable {
    case tcp(host: String, port: Int)
    case unix(path: String)
}

/// A listener that cannot be set up.
public enum ListenerError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Another process is listening on this Unix socket path.
    case socketInUse(path: String)
    /// The path exists and is not a socket.
    case notASocket(path: String)
    /// Binding (or adopting an inherited socket) failed.
    case cannotListen(address: String, reason: String)

    public var description: String {
        switch self {
        case .socketInUse(let path):
            return "cannot listen on unix:\(path): another process is listening on this socket "
                + "(stop it first, or choose another --unix path)"
        case .notASocket(let path):
            return "cannot listen on unix:\(path): the path exists and is not a socket (refusing to remove it)"
        case .cannotListen(let address, let reason):
            return "cannot listen on \(address): \(reason)"
        }
    }
}

/// A server that cannot start, with what was wrong.
public struct ServerError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ d: String) { description = d }
}
