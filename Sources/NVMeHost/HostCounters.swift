import Synchronization

/// The host driver's counters for one queue pair, readable while it runs.
public final class HostCounters: Sendable {
    let commandsSubmitted = Atomic<UInt64>(0)
    let completionsReaped = Atomic<UInt64>(0)
    let sqShadowWrites = Atomic<UInt64>(0)
    let cqShadowWrites = Atomic<UInt64>(0)
    let sqMMIOWrites = Atomic<UInt64>(0)
    let cqMMIOWrites = Atomic<UInt64>(0)
    let interruptsHandled = Atomic<UInt64>(0)
    let interruptsMerged = Atomic<UInt64>(0)
    let waitsForSlot = Atomic<UInt64>(0)
    let splitRequests = Atomic<UInt64>(0)
    let retries = Atomic<UInt64>(0)
    let errors = Atomic<UInt64>(0)

    public init() {}

    @inline(__always)
    func bump(_ c: borrowing Atomic<UInt64>, by n: UInt64 = 1) { c.add(n, ordering: .relaxed) }

    public func snapshot() -> HostStatistics {
        var s = HostStatistics()
        s.commandsSubmitted = commandsSubmitted.load(ordering: .relaxed)
        s.completionsReaped = completionsReaped.load(ordering: .relaxed)
        s.sqShadowDoorbellWrites = sqShadowWrites.load(ordering: .relaxed)
        s.cqShadowDoorbellWrites = cqShadowWrites.load(ordering: .relaxed)
        s.sqMMIODoorbellWrites = sqMMIOWrites.load(ordering: .relaxed)
        s.cqMMIODoorbellWrites = cqMMIOWrites.load(ordering: .relaxed)
        s.interruptsHandled = interruptsHandled.load(ordering: .relaxed)
        s.interruptsMerged = interruptsMerged.load(ordering: .relaxed)
        s.waitsForSlot = waitsForSlot.load(ordering: .relaxed)
        s.splitRequests = splitRequests.load(ordering: .relaxed)
        s.retries = retries.load(ordering: .relaxed)
        s.errors = errors.load(ordering: .relaxed)
        return s
    }
}

/// A copy of host counters (one queue pair, or the sum over all of them).
public struct HostStatistics: Codable, Hashable, Sendable {
    public var commandsSubmitted: UInt64 = 0
    public var completionsReaped: UInt64 = 0
    /// Stores to a Shadow Doorbell entry (SQ tail / CQ head).
    public var sqShadowDoorbellWrites: UInt64 = 0
    public var cqShadowDoorbellWrites: UInt64 = 0
    /// MMIO doorbell writes (traps) the host made.
    public var sqMMIODoorbellWrites: UInt64 = 0
    public var cqMMIODoorbellWrites: UInt64 = 0
    public var interruptsHandled: UInt64 = 0
    /// MSI-X messages that arrived while the handler was already scheduled.
    public var interruptsMerged: UInt64 = 0
    /// Commands that waited for a free slot because the queue was full.
    public var waitsForSlot: UInt64 = 0
    /// Requests split into several commands (MDTS and per-command limits).
    public var splitRequests: UInt64 = 0
    /// Commands resubmitted after a controller reset.
    public var retries: UInt64 = 0
    /// Commands that completed with an error.
    public var errors: UInt64 = 0

    public init() {}

    public static func + (a: HostStatistics, b: HostStatistics) -> HostStatistics {
        var r = HostStatistics()
        r.commandsSubmitted = a.commandsSubmitted + b.commandsSubmitted
        r.completionsReaped = a.completionsReaped + b.completionsReaped
        r.sqShadowDoorbellWrites = a.sqShadowDoorbellWrites + b.sqShadowDoorbellWrites
        r.cqShadowDoorbellWrites = a.cqShadowDoorbellWrites + b.cqShadowDoorbellWrites
        r.sqMMIODoorbellWrites = a.sqMMIODoorbellWrites + b.sqMMIODoorbellWrites
        r.cqMMIODoorbellWrites = a.cqMMIODoorbellWrites + b.cqMMIODoorbellWrites
        r.interruptsHandled = a.interruptsHandled + b.interruptsHandled
        r.interruptsMerged = a.interruptsMerged + b.interruptsMerged
        r.waitsForSlot = a.waitsForSlot + b.waitsForSlot
        r.splitRequests = a.splitRequests + b.splitRequests
        r.retries = a.retries + b.retries
        r.errors = a.errors + b.errors
        return r
    }

    /// MMIO doorbell writes per command: the headline figure.
    public var mmioDoorbellWritesPerCommand: Double {
        commandsSubmitted == 0 ? 0 : Double(sqMMIODoorbellWrites + cqMMIODoorbellWrites) / Double(commandsSubmitted)
    }
}
