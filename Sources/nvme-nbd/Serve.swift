import ArgumentParser
import Dispatch
import Foundation
import Logging
import NBDMetrics
import NBDServer
import ServiceLife
import ServiceLifecycle

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve exports over NBD (TCP and/or Unix sockets).",
        discussion: """
            With no --listen, -p, -b, --unix or inherited socket the server listens on 127.0.0.1:10809. FILE (as in \
            qemu-nbd and nbd-server) is the default export, like --export file=FILE (named by -x). SIGINT/SIGTERM \
            stop it gracefully (requests in flight finish, file exports are flushed, --stats-json is written); \
            SIGUSR1 writes --stats-json without stopping. Started with LISTEN_PID/LISTEN_FDS (systemd socket \
            activation, sd_listen_fds(3)) it serves the inherited sockets and binds nothing. With NOTIFY_SOCKET set \
            it sends READY=1 once every listener is ready (sd_notify(3)).
            """)

    @Argument(
        help: ArgumentHelp(
            "Image file or block device to serve as the default export (the same as --export file=FILE; -x names it).",
            valueName: "file"),
        completion: .file())
    var file: String?

    @Option(name: .customLong("listen"), help: NBDServerAddress.help)
    var listen: [String] = []

    @Option(
        name: [.customShort("p"), .customLong("port")],
        help: ArgumentHelp(
            "TCP port to listen on (qemu-nbd, nbdkit), on -b's address or 127.0.0.1; 0 picks a free port.",
            valueName: "port"))
    var port: Int?

    @Option(
        name: [.customShort("b"), .customLong("bind")],
        help: ArgumentHelp(
            "Address for the -p listener (qemu-nbd): 127.0.0.1 unless given; port 10809 without -p.",
            valueName: "address"))
    var bind: String?

    @Option(
        name: [.customShort("U"), .customLong("unix"), .customShort("k"), .customLong("socket")],
        help: ArgumentHelp(
            "Unix socket to listen on (-U as nbdkit, -k as qemu-nbd). \"-\" makes a private one in a new temporary directory (nbdkit's -U -), for --run. Repeatable.",
            valueName: "path"),
        completion: .file())
    var unix: [String] = []

    @Option(
        name: [.customShort("x"), .customLong("export-name")],
        help: ArgumentHelp(
            "Name of the FILE export, or of the default memory export when neither FILE nor --export is given (default \"\").",
            valueName: "name"))
    var exportName: String?

    @Flag(
        name: [.customShort("r"), .customLong("read-only")],
        help: "Serve every export read-only: writes fail with EPERM, READ_ONLY is advertised.")
    var readOnly = false

    @Flag(
        name: [.customShort("t"), .customLong("persistent")],
        help: "Accepted for qemu-nbd command lines: nvme-nbd always keeps serving after the last client disconnects.")
    var persistent = false

    @OptionGroup var exportOptions: ExportOptionsGroup

    @Option(name: .customLong("queues"), help: "Event-loop threads, and NVMe I/O queue pairs per export (1...64).")
    var queues = 2

    @Option(
        name: .customLong("stats-json"),
        help: ArgumentHelp("Write per-export counters here at shutdown and on SIGUSR1.", valueName: "file"),
        completion: .file())
    var statsJSON: String?

    @Option(
        name: .customLong("pid-file"),
        help: ArgumentHelp(
            "Write the server's pid here once every listener is ready; removed on exit.", valueName: "file"),
        completion: .file())
    var pidFile: String?

    @Option(name: .customLong("run"), help: CaptiveEnvironment.help)
    var runCommand: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: LogLevelArgument = .info

    @Option(
        name: [.customLong("max-connections"), .customShort("e"), .customLong("shared")],
        help: ArgumentHelp(
            "Connections served at once (-e/--shared as qemu-nbd; 0: no limit); more are refused during the handshake.",
            valueName: "n"))
    var maxConnections = 1024

    @Option(name: .customLong("handshake-timeout"), help: "Seconds a client may take to finish the handshake.")
    var handshakeTimeout = 30

    @OptionGroup var metrics: MetricsOptions

    @Option(
        name: .customLong("host-poll-us"),
        help:
            "Microseconds an event loop polls its completion queue after submitting, before waiting for the interrupt (0: interrupts only)."
    )
    var hostPollMicroseconds = 20
    @Option(
        name: .customLong("host-poll-depth"),
        help: "Poll the completion queue (--host-poll-us) only while at most this many commands are in flight.")
    var hostPollDepth = 4

    @Option(
        name: .customLong("max-in-flight"),
        help: "Requests one connection may have in flight before the server stops reading it.")
    var maxInFlight = 256

    @Option(
        name: .customLong("memory-budget"),
        help: ArgumentHelp(
            "Bytes all connections together may hold in requests in flight and unwritten replies before the server stops reading them (K/M/G suffixes).",
            valueName: "size"))
    var memoryBudget = "1G"

    @Option(name: .customLong("tls"), help: TLSModeArgument.help)
    var tls: TLSModeArgument = .off

    @Option(
        name: .customLong("tls-certificates"),
        help: ArgumentHelp(
            "Directory holding server-cert.pem, server-key.pem and (for --tls-verify-peer) ca-cert.pem (default /etc/pki/nvme-nbd as root, else ~/.pki/nvme-nbd).",
            valueName: "dir"),
        completion: .directory)
    var tlsCertificates: String?

    @Flag(name: .customLong("tls-verify-peer"), help: "Clients must present a certificate signed by ca-cert.pem.")
    var tlsVerifyPeer = false

    @Option(
        name: .customLong("tls-psk"),
        help: ArgumentHelp(
            "Pre-shared keys instead of certificates: a psktool(1) file of username:hexkey lines (TLS 1.2 PSK).",
            valueName: "file"),
        completion: .file())
    var tlsPSK: String?

    @Flag(name: [.customShort("V"), .customLong("version")], help: "Print the version and exit.")
    var version = false

    func validate() throws {
        try (1...64).check(queues, "--queues")
        guard maxConnections >= 0 else {
            throw ValidationError("-e/--shared/--max-connections \(maxConnections): accepted 0 (no limit) or more")
        }
        try (1...3600).check(handshakeTimeout, "--handshake-timeout", unit: " seconds")
        try (0...1_000_000).check(hostPollMicroseconds, "--host-poll-us")
        try (0...65536).check(hostPollDepth, "--host-poll-depth")
        try (1...65536).check(maxInFlight, "--max-in-flight")
        _ = try memoryBudgetBytes
        if let port { try (0...65535).check(port, "-p/--port") }
        if let bind, bind.isEmpty { throw ValidationError("-b/--bind needs an address (such as 127.0.0.1 or ::1)") }
        for l in listen {
            do { _ = try NBDServerAddress.parse(l) } catch { throw ValidationError("\(error)") }
        }
        if unix.contains(where: \.isEmpty) {
            throw ValidationError("-U/--unix/-k/--socket needs a path (or - for a private socket)")
        }
        if unix.filter({ $0 == "-" }).count > 1 { throw ValidationError("-U - (a private socket) may be given once") }
        if let runCommand, runCommand.trimmingCharacters(in: .whitespaces).isEmpty {
            throw ValidationError("--run needs a command")
        }
        if let file, file.isEmpty {
            throw ValidationError("FILE is empty: give the path of an image file or block device")
        }
        for (option, path) in [("--stats-json", statsJSON), ("--pid-file", pidFile)] {
            guard let path else { continue }
            let dir = (path as NSString).deletingLastPathComponent
            let type = try? FileManager.default.attributesOfItem(atPath: dir)[.type] as? FileAttributeType
            if !dir.isEmpty && type != .typeDirectory {
                throw ValidationError("\(option) \(path): directory \(dir) does not exist")
            }
        }
        _ = try exportSpecs()
        _ = try tlsSettings()
    }

    /// `--memory-budget` in bytes, checked: 1 MiB to 1 PiB.
    var memoryBudgetBytes: Int {
        get throws(ValidationError) {
            guard let bytes = ExportSpec.parseSize(memoryBudget), bytes >= 1 << 20, bytes <= 1 << 50 else {
                throw ValidationError(
                    "--memory-budget \(memoryBudget): accepted 1M...1P, as bytes or with a K/M/G/T suffix")
            }
            return Int(bytes)
        }
    }

    /// --tls and its credentials; nil with --tls off. The files themselves are
    /// read when the server starts (a missing one is named then).
    func tlsSettings() throws -> TLSSettings? {
        guard tls.mode != .off else {
            var given: [String] = []
            if tlsCertificates != nil { given.append("--tls-certificates") }
            if tlsVerifyPeer { given.append("--tls-verify-peer") }
            if tlsPSK != nil { given.append("--tls-psk") }
            if !given.isEmpty {
                throw ValidationError(
                    "\(given.joined(separator: ", ")) \(given.count == 1 ? "needs" : "need") --tls on or --tls require")
            }
            return nil
        }
        if let tlsPSK {
            if tlsCertificates != nil {
                throw ValidationError("--tls-psk and --tls-certificates: give one (PSK replaces certificates)")
            }
            if tlsVerifyPeer {
                throw ValidationError(
                    "--tls-verify-peer checks client certificates: it cannot be combined with --tls-psk")
            }
            return TLSSettings(mode: tls.mode, credentials: .psk(file: tlsPSK))
        }
        let directory = tlsCertificates ?? TLSSettings.defaultCertificateDirectory()
        return TLSSettings(mode: tls.mode, credentials: .certificates(directory: directory, verifyPeer: tlsVerifyPeer))
    }

    /// The exports: FILE (named by -x) first, then every --export; the default
    /// memory export (named by -x) when there is neither. -r makes them all read-only.
    func exportSpecs() throws -> [ExportSpec] {
        var specs = try exportOptions.givenSpecs()
        if let file {
            specs.insert(ExportSpec(name: exportName ?? "", backing: .file(path: file), size: nil), at: 0)
        } else if specs.isEmpty {
            var spec = ExportSpec.default
            spec.name = exportName ?? ""
            specs = [spec]
        } else if let exportName {
            throw ValidationError(
                "-x/--export-name '\(exportName)' names the FILE export or the default memory export; with --export give name=\(exportName) in the spec instead"
            )
        }
        if let n = exportName, n.utf8.count > 4096 {
            throw ValidationError("-x/--export-name is longer than 4096 bytes")
        }
        if readOnly {
            for i in specs.indices { specs[i].readOnly = true }
        }
        return specs
    }

    /// The TCP listeners: --listen values, then -p/-b's; 127.0.0.1:10809 when no
    /// listener of any kind is given.
    func tcpListeners() -> [String] {
        var tcp = listen
        if port != nil || bind != nil {
            var host = bind ?? "127.0.0.1"
            if host.contains(":") && !host.hasPrefix("[") { host = "[\(host)]" }
            tcp.append("\(host):\(port ?? 10809)")
        }
        if tcp.isEmpty && unix.isEmpty { tcp = ["127.0.0.1:10809"] }
        return tcp
    }
}

/// `--tls off|on|require`.
struct TLSModeArgument: ExpressibleByArgument, Sendable {
    let mode: TLSSettings.Mode
    static let off = TLSModeArgument(mode: .off)
    init(mode: TLSSettings.Mode) { self.mode = mode }
    init?(argument: String) {
        guard let mode = TLSSettings.Mode(rawValue: argument.lowercased()) else { return nil }
        self.mode = mode
    }
    static var allValueStrings: [String] { TLSSettings.Mode.allCases.map(\.rawValue) }
    /// `--tls`'s help: the modes, as nbdkit and qemu-nbd name them.
    static var help: ArgumentHelp {
        ArgumentHelp(
            "TLS (NBD_OPT_STARTTLS), as nbdkit and qemu-nbd: off; on (plain and TLS clients); require (every option but STARTTLS and ABORT gets NBD_REP_ERR_TLS_REQD).",
            valueName: allValueStrings.joined(separator: "|"))
    }
    var defaultValueDescription: String { mode.rawValue }
}

/// `--listen` parsing, shared with the server, and the syntax it accepts.
enum NBDServerAddress {
    static let help = ArgumentHelp(
        "TCP address to listen on: HOST:PORT, [V6ADDR]:PORT, HOST (port 10809) or PORT (127.0.0.1). Repeatable.",
        valueName: "host:port")

    static func parse(_ s: String) throws -> (String, Int) {
        try NBDServer.parseListenAddress(s)
    }
}
