import ConcurrencyHelpers

/// Every counter the host driver keeps per queue pair. The case name is the JSON
/// field name.
public enum HostCounter: Int, CounterKey {
    // MARK: Queues (NVMe Base Specification 2.0, §3.3)

    /// Commands placed in the submission queue.
    case commandsSubmitted
    /// Completion queue entries consumed (§4.6, Figure 89).
    case completionsReaped

    // MARK: Doorbells

    /// Stores to a Shadow Doorbell entry, SQ tail (Doorbell Buffer Config, NVMe 1.3 §5.7).
    case sqShadowDoorbellWrites
    /// Stores to a Shadow Doorbell entry, CQ head.
    case cqShadowDoorbellWrites
    /// MMIO writes (traps) to a Submission Queue Tail Doorbell (§3.1.3, Figure 35).
    case sqMMIODoorbellWrites
    /// MMIO writes (traps) to a Completion Queue Head Doorbell.
    case cqMMIODoorbellWrites

    // MARK: Interrupts

    /// Runs of the completion handler (`processCompletions()`, Linux's `nvme_irq`).
    case interruptsHandled
    /// MSI-X messages that arrived while the handler was already scheduled.
    case interruptsMerged

    // MARK: Submission path

    /// Commands that waited for a free slot because the queue was full (§3.3.1).
    case waitsForSlot
    /// Requests split into several commands (MDTS, Identify Controller §5.17.2.1,
    /// and per-command limits).
    case splitRequests
    /// Commands resubmitted after a controller reset.
    case retries
    /// Commands that completed with an error status (§4.6.1, Figure 92).
    case errors
}

extension CounterValues where Key == HostCounter {
    /// MMIO doorbell writes per command: the headline figure.
    public var mmioDoorbellWritesPerCommand: Double {
        let commands = self[.commandsSubmitted]
        let traps = self[.sqMMIODoorbellWrites] + self[.cqMMIODoorbellWrites]
        return commands == 0 ? 0 : Double(traps) / Double(commands)
    }
}

/// The host driver's counters for one queue pair, readable while it runs.
public typealias HostCounters = CounterBlock<HostCounter>

/// A copy of host counters (one queue pair, or the sum over all of them with `+`):
/// one `--stats-json` field per ``HostCounter``.
public typealias HostStatistics = CounterValues<HostCounter>
