import ArgumentParser
import Foundation
import Logging
import NBDServer
import NVMeController

@main
struct NVMeNBDCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nvme-nbd",
        abstract: "An NBD server whose every request goes through an emulated NVMe controller with shadow doorbells.",
        discussion: """
            `nvme-nbd FILE` and `nvme-nbd [OPTIONS]` run `serve` (the default subcommand): `nvme-nbd -r -p 10810 disk.img` \
            serves disk.img read-only on 127.0.0.1:10810. A FILE named `serve`, `identify` or `top` must be given as \
            `nvme-nbd serve ./serve`.
            """,
        subcommands: [Serve.self, Identify.self, Top.self],
        defaultSubcommand: Serve.self)
}

/// Options shared by `serve` and `identify`: what the exports are and how their
/// controllers are set up.
struct ExportOptionsGroup: ParsableArguments {
    @Option(
        name: .customLong("export"),
        help: ArgumentHelp(
            "Add an export: \(ExportSpec.syntax). Memory-backed without file=. Repeatable. Default: one 1 GiB memory export named \"\".",
            valueName: "spec"))
    var exports: [String] = []

    @Option(
        name: .customLong("shadow-doorbells"),
        help: ArgumentHelp("Doorbell Buffer Config (shadow doorbells + EventIdx): on or off.", valueName: "on|off"))
    var shadowDoorbells: OnOff = .on

    @Option(name: .customLong("queue-depth"), help: "Entries per NVMe I/O queue (2...4096).")
    var queueDepth = 1024

    @Option(
        name: .customLong("poll-us"),
        help: "Microseconds the controller thread polls for work before it parks (0 parks at once).")
    var pollMicroseconds = Int(ControllerOptions.recommendedPollNanoseconds / 1000)

    @Option(
        name: .customLong("deep-poll-us"),
        help:
            "Microseconds the controller polls before parking while its queues run deep (more than 4 commands per round)."
    )
    var deepPollMicroseconds = Int(ControllerOptions.recommendedDeepPollNanoseconds / 1000)

    @Option(
        name: .customLong("storage-poll-us"),
        help:
            "Microseconds the controller polls before parking while file or block-device I/O is in flight (0: park and let the completion wake it)."
    )
    var storagePollMicroseconds = Int(ControllerOptions.recommendedStoragePollNanoseconds / 1000)

    @Option(
        name: .customLong("eventidx-policy"),
        help: ArgumentHelp(
            "How the controller keeps EventIdx: spdk (never-trap while awake, armed only before parking) or qemu (armed after every fetch and before every completion).",
            valueName: "spdk|qemu"))
    var eventIndexPolicy: EventIndexPolicy = .spdk

    @Option(
        name: .customLong("mdts"), help: "Identify Controller MDTS: transfers up to 4 KiB << MDTS per command (1...10)."
    )
    var mdts = 7

    func specs() throws -> [ExportSpec] {
        let given = try givenSpecs()
        return given.isEmpty ? [.default] : given
    }

    /// The `--export` values as given (none: empty).
    func givenSpecs() throws -> [ExportSpec] {
        try exports.map { text in
            do { return try ExportSpec.parse(text) } catch let e as ExportSpecError {
                throw ValidationError(e.description)
            }
        }
    }

    func validate() throws {
        try (2...4096).check(queueDepth, "--queue-depth")
        for (value, option) in [
            (pollMicroseconds, "--poll-us"), (deepPollMicroseconds, "--deep-poll-us"),
            (storagePollMicroseconds, "--storage-poll-us"),
        ] {
            try (0...10_000_000).check(value, option)
        }
        try (1...10).check(mdts, "--mdts")
        _ = try specs()
    }

    func exportOptions() -> ExportOptions {
        var o = ExportOptions()
        o.shadowDoorbells = shadowDoorbells == .on
        o.queueDepth = queueDepth
        o.pollNanoseconds = UInt64(pollMicroseconds) * 1000
        o.deepPollNanoseconds = UInt64(deepPollMicroseconds) * 1000
        o.storagePollNanoseconds = UInt64(storagePollMicroseconds) * 1000
        o.eventIndexPolicy = eventIndexPolicy
        o.maximumDataTransferSize = UInt8(mdts)
        return o
    }
}

extension ClosedRange<Int> {
    /// Every integer option's range check, and its one message: "OPTION VALUE: accepted LOW...HIGH".
    func check(_ value: Int, _ option: String, unit: String = "") throws(ValidationError) {
        guard !contains(value) else { return }
        throw ValidationError("\(option) \(value): accepted \(lowerBound)...\(upperBound)\(unit)")
    }
}

enum OnOff: String, ExpressibleByArgument, CaseIterable {
    case on, off
    init?(argument: String) {
        switch argument.lowercased() {
        case "on", "true", "yes", "1": self = .on
        case "off", "false", "no", "0": self = .off
        default: return nil
        }
    }
}

enum LogLevelArgument: String, ExpressibleByArgument, CaseIterable {
    case trace, debug, info, notice, warning, error, critical
    var level: Logger.Level { Logger.Level(rawValue: rawValue)! }
}

extension EventIndexPolicy: ExpressibleByArgument {}
