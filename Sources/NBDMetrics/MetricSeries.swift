import NBDProtocol
import NBDServer

/// The names of every series `--metrics` serves, with their help text: the
/// one list the exporter, `nvme-nbd top` and the README table follow. Every
/// series carries an `export` label (the export's name, `""` for the default
/// export).
public enum MetricSeries {
    /// NBD requests carried out, by `type` (counter).
    public static let requests = "nvme_nbd_requests_total"
    /// Payload bytes of successful NBD reads (counter).
    public static let bytesRead = "nvme_nbd_read_bytes_total"
    /// Payload bytes of successful NBD writes (counter).
    public static let bytesWritten = "nvme_nbd_written_bytes_total"
    /// NBD requests answered with an error (counter).
    public static let errors = "nvme_nbd_errors_total"
    /// Seconds from the server starting a request to its whole reply being
    /// queued, by `type` (histogram).
    public static let latency = "nvme_nbd_request_duration_seconds"
    /// NBD requests started and not yet answered (gauge).
    public static let inFlight = "nvme_nbd_requests_in_flight"
    /// Connections in the transmission phase (gauge).
    public static let connections = "nvme_nbd_connections"
    /// MMIO writes (traps) to I/O queue doorbells, by `doorbell` (`sq_tail`,
    /// `cq_head`), counted by the controller (counter).
    public static let mmioDoorbellWrites = "nvme_nbd_mmio_doorbell_writes_total"
    /// Host stores into the Shadow Doorbell buffer, by `doorbell` (counter).
    public static let shadowDoorbellWrites = "nvme_nbd_shadow_doorbell_writes_total"
    /// Controller stores into the EventIdx buffer (counter).
    public static let eventIndexWrites = "nvme_nbd_eventidx_writes_total"
    /// MSI-X messages the controller raised (counter).
    public static let interrupts = "nvme_nbd_interrupts_total"
    /// Times the controller thread went idle: armed EventIdx and slept (counter).
    public static let parks = "nvme_nbd_controller_parks_total"
    /// Times a trap woke the parked controller thread (counter).
    public static let wakeups = "nvme_nbd_controller_wakeups_total"
    /// NVMe I/O commands the controller processed (counter).
    public static let ioCommands = "nvme_nbd_nvme_io_commands_total"
    /// 1 when the export's driver uses shadow doorbells, else 0 (gauge).
    public static let shadowDoorbells = "nvme_nbd_shadow_doorbells_enabled"

    /// Help text by series name, for the `# HELP` lines.
    public static let help: [String: String] = [
        requests: "NBD requests carried out, by type.",
        bytesRead: "Payload bytes of successful NBD reads.",
        bytesWritten: "Payload bytes of successful NBD writes.",
        errors: "NBD requests answered with an error.",
        latency: "Seconds from the server starting an NBD request to its whole reply being queued.",
        inFlight: "NBD requests started and not yet answered.",
        connections: "NBD connections in the transmission phase.",
        mmioDoorbellWrites: "MMIO writes (traps) to NVMe I/O queue doorbells, by doorbell.",
        shadowDoorbellWrites: "Host stores into the NVMe Shadow Doorbell buffer, by doorbell.",
        eventIndexWrites: "Controller stores into the NVMe EventIdx buffer.",
        interrupts: "MSI-X interrupts the emulated controller raised.",
        parks: "Times the controller thread armed EventIdx and slept.",
        wakeups: "Times a doorbell trap woke the parked controller thread.",
        ioCommands: "NVMe I/O commands the controller processed.",
        shadowDoorbells: "1 when the export uses shadow doorbells (Doorbell Buffer Config), else 0.",
    ]

    /// The latency histogram's upper bounds in nanoseconds: 10 µs to 1 s in
    /// 1-2.5-5 steps.
    public static let latencyBucketNanoseconds: [Int64] = [
        10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
        1_000_000, 2_500_000, 5_000_000, 10_000_000, 25_000_000, 50_000_000,
        100_000_000, 250_000_000, 500_000_000, 1_000_000_000,
    ]

    /// The `type` label of each NBD request type counted, with its counter.
    public static let requestTypes: [(label: String, type: NBDCommandType, counter: NBDCounter)] = [
        ("read", .read, .reads), ("write", .write, .writes), ("flush", .flush, .flushes),
        ("trim", .trim, .trims), ("write_zeroes", .writeZeroes, .writeZeroes),
        ("cache", .cache, .caches), ("block_status", .blockStatus, .blockStatus),
    ]
}
