import Foundation
import Logging
import NBDServer
import ServiceLife
import TestSupport
import Testing

/// Listener setup: `--listen` forms, a live Unix socket refused, a stale one replaced.
///
/// Time limits here are a hang guard only, and 30 minutes everywhere: a time limit
/// counts from when the test is scheduled, and synchronous tests wait for one of
/// the cooperative pool's two threads — under ThreadSanitizer, a pure parsing test
/// waited 680 s behind CPU-bound suites and "exceeded" a 2-minute limit.
@Suite("Listeners", .timeLimit(.minutes(30)))
struct ListenerTests {
    @Test("--listen accepts HOST:PORT, [V6]:PORT, :PORT, HOST and a bare PORT")
    func listenForms() throws {
        #expect(try NBDServer.parseListenAddress("10899") == ("127.0.0.1", 10899))
        #expect(try NBDServer.parseListenAddress("0") == ("127.0.0.1", 0))
        #expect(try NBDServer.parseListenAddress("localhost") == ("localhost", 10809))
        #expect(try NBDServer.parseListenAddress("[::1]:10900") == ("::1", 10900))
        #expect(try NBDServer.parseListenAddress(":10901") == ("127.0.0.1", 10901))
        #expect(try NBDServer.parseListenAddress("0.0.0.0:10902") == ("0.0.0.0", 10902))
        #expect(throws: (any Error).self) { try NBDServer.parseListenAddress("99999") }
        #expect(throws: (any Error).self) { try NBDServer.parseListenAddress("host:port") }
    }

    static func configuration(unix path: String) -> NBDServer.Configuration {
        var config = NBDServer.Configuration()
        config.tcp = []
        config.unix = [path]
        config.exports = [ExportSpec(name: "", size: 1 << 20, blockSize: 512)]
        config.exportOptions.hostMemoryBytes = 64 << 20
        return config
    }

    static let logger = Logger(label: "listener-test", factory: { _ in SwiftLogNoOpLogHandler() })

    @Test("a second server on a live Unix socket is refused and the first keeps its socket")
    func liveSocketRefused() throws {
        let dir = try TemporaryDirectory(under: "/tmp", prefix: "nbdlisten")
        let path = dir.path + "/s"
        let first = try NBDServer(configuration: Self.configuration(unix: path), logger: Self.logger)
        defer { first.shutdown(graceSeconds: 1) }
        #expect(try UnixSocketProbe.state(of: path) == .live)
        #expect(throws: ListenerError.socketInUse(path: path)) {
            _ = try NBDServer(configuration: Self.configuration(unix: path), logger: Self.logger)
        }
        #expect(
            try UnixSocketProbe.state(of: path) == .live, "the refused server must not unlink the first one's socket")
    }

    @Test("a stale Unix socket file is replaced; a regular file is refused")
    func staleSocketReplaced() throws {
        let dir = try TemporaryDirectory(under: "/tmp", prefix: "nbdlisten")
        let path = dir.path + "/s"
        // A socket bound and closed without unlinking: what a killed server leaves.
        let first = try NBDServer(configuration: Self.configuration(unix: path), logger: Self.logger)
        first.shutdown(graceSeconds: 1)
        #expect(try UnixSocketProbe.state(of: path) == .absent)
        let stale = try makeStaleSocket(path)
        #expect(stale)
        #expect(try UnixSocketProbe.state(of: path) == .stale)
        let second = try NBDServer(configuration: Self.configuration(unix: path), logger: Self.logger)
        #expect(try UnixSocketProbe.state(of: path) == .live)
        second.shutdown(graceSeconds: 1)

        let file = dir.path + "/file"
        try Data("keep".utf8).write(to: URL(fileURLWithPath: file))  // not .atomic: Foundation leaves a TemporaryDirectory.* behind
        #expect(throws: ListenerError.notASocket(path: file)) {
            _ = try NBDServer(configuration: Self.configuration(unix: file), logger: Self.logger)
        }
        #expect(FileManager.default.contents(atPath: file) == Data("keep".utf8))
    }

    /// Binds a Unix socket at `path` through python3 and exits without unlinking it.
    func makeStaleSocket(_ path: String) throws -> Bool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["-c", "import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])", path]
        try p.run()
        p.waitUntilExit()
        return p.terminationStatus == 0
    }
}
