/// Controller register offsets in BAR0 (NVMe Base Specification 2.0, §3.1.3, Figure 35).
public enum RegisterOffset {
    public static let cap: UInt32 = 0x00
    public static let vs: UInt32 = 0x08
    public static let intms: UInt32 = 0x0C
    public static let intmc: UInt32 = 0x10
    public static let cc: UInt32 = 0x14
    public static let csts: UInt32 = 0x1C
    public static let nssr: UInt32 = 0x20
    public static let aqa: UInt32 = 0x24
    public static let asq: UInt32 = 0x28
    public static let acq: UInt32 = 0x30
    /// First doorbell (§3.1.3.x "SQ 0 Tail Doorbell").
    public static let doorbellBase: UInt32 = 0x1000

    /// Doorbell offset for queue `qid`: `0x1000 + (2*qid + isCQ) * (4 << DSTRD)` (§3.1.3.x, Figures 55–56).
    public static func doorbell(queue qid: UInt16, completion: Bool, stride dstrd: UInt8) -> UInt32 {
        doorbellBase + (2 * UInt32(qid) + (completion ? 1 : 0)) * (4 << UInt32(dstrd))
    }

    /// The inverse of ``doorbell(queue:completion:stride:)``; `nil` for an offset that is
    /// not a doorbell.
    public static func decodeDoorbell(_ offset: UInt32, stride dstrd: UInt8) -> (queue: UInt16, completion: Bool)? {
        guard offset >= doorbellBase else { return nil }
        let step = UInt32(4) << UInt32(dstrd)
        let rel = offset - doorbellBase
        guard rel % step == 0 else { return nil }
        let index = rel / step
        guard index / 2 <= UInt32(UInt16.max) else { return nil }
        return (UInt16(index / 2), index % 2 == 1)
    }
}

/// Controller Capabilities, CAP (§3.1.3.1, Figure 36).
public struct ControllerCapabilities: Hashable, Sendable {
    public var raw: UInt64
    public init(raw: UInt64) { self.raw = raw }
    public init(
        maximumQueueEntries0: UInt16, contiguousQueuesRequired: Bool, timeout500ms: UInt8,
        doorbellStride: UInt8, nvmCommandSet: Bool, memoryPageSizeMinimum: UInt8, memoryPageSizeMaximum: UInt8
    ) {
        var r = UInt64(maximumQueueEntries0)
        if contiguousQueuesRequired { r |= 1 << 16 }
        r |= UInt64(timeout500ms) << 24
        r |= UInt64(doorbellStride & 0xF) << 32
        if nvmCommandSet { r |= 1 << 37 }
        r |= UInt64(memoryPageSizeMinimum & 0xF) << 48
        r |= UInt64(memoryPageSizeMaximum & 0xF) << 52
        raw = r
    }
    /// MQES, 0-based.
    public var maximumQueueEntries0: UInt16 { UInt16(truncatingIfNeeded: raw) }
    public var contiguousQueuesRequired: Bool { raw & (1 << 16) != 0 }
    /// TO, in 500 ms units.
    public var timeout500ms: UInt8 { UInt8(truncatingIfNeeded: raw >> 24) }
    /// DSTRD: doorbell stride is `4 << DSTRD` bytes.
    public var doorbellStride: UInt8 { UInt8((raw >> 32) & 0xF) }
    public var nvmCommandSet: Bool { raw & (1 << 37) != 0 }
    /// MPSMIN: minimum page size is `2^(12 + MPSMIN)`.
    public var memoryPageSizeMinimum: UInt8 { UInt8((raw >> 48) & 0xF) }
    public var memoryPageSizeMaximum: UInt8 { UInt8((raw >> 52) & 0xF) }
}

/// Controller Configuration, CC (§3.1.3.5, Figure 41).
public struct ControllerConfiguration: Hashable, Sendable {
    public var raw: UInt32
    public init(raw: UInt32) { self.raw = raw }
    public init(
        enable: Bool, memoryPageSize: UInt8, ioSubmissionQueueEntrySize: UInt8, ioCompletionQueueEntrySize: UInt8,
        shutdownNotification: UInt8 = 0
    ) {
        var r: UInt32 = enable ? 1 : 0
        r |= UInt32(memoryPageSize & 0xF) << 7
        r |= UInt32(shutdownNotification & 0x3) << 14
        r |= UInt32(ioSubmissionQueueEntrySize & 0xF) << 16
        r |= UInt32(ioCompletionQueueEntrySize & 0xF) << 20
        raw = r
    }
    public var enable: Bool {
        get { raw & 1 != 0 }
        set { raw = newValue ? raw | 1 : raw & ~1 }
    }
    /// CSS, bits 6:4 (000b: NVM command set).
    public var commandSetSelected: UInt8 { UInt8((raw >> 4) & 0x7) }
    /// MPS: page size is `2^(12 + MPS)`.
    public var memoryPageSize: UInt8 { UInt8((raw >> 7) & 0xF) }
    /// AMS, bits 13:11.
    public var arbitrationMechanism: UInt8 { UInt8((raw >> 11) & 0x7) }
    /// SHN, bits 15:14 (01b normal, 10b abrupt).
    public var shutdownNotification: UInt8 { UInt8((raw >> 14) & 0x3) }
    /// IOSQES: log2 of the I/O SQ entry size (6 for 64 bytes).
    public var ioSubmissionQueueEntrySize: UInt8 { UInt8((raw >> 16) & 0xF) }
    /// IOCQES: log2 of the I/O CQ entry size (4 for 16 bytes).
    public var ioCompletionQueueEntrySize: UInt8 { UInt8((raw >> 20) & 0xF) }
}

/// Controller Status, CSTS (§3.1.3.6, Figure 42).
public struct ControllerStatus: Hashable, Sendable {
    public var raw: UInt32
    public init(raw: UInt32) { self.raw = raw }
    public var ready: Bool {
        get { raw & 1 != 0 }
        set { raw = newValue ? raw | 1 : raw & ~1 }
    }
    /// CFS: Controller Fatal Status.
    public var fatal: Bool {
        get { raw & 2 != 0 }
        set { raw = newValue ? raw | 2 : raw & ~2 }
    }
    /// SHST, bits 3:2 (10b: shutdown processing complete).
    public var shutdownStatus: UInt8 {
        get { UInt8((raw >> 2) & 0x3) }
        set { raw = (raw & ~0xC) | (UInt32(newValue & 0x3) << 2) }
    }
}

/// Admin Queue Attributes, AQA (§3.1.3.8, Figure 44). Sizes are 0-based.
public struct AdminQueueAttributes: Hashable, Sendable {
    public var raw: UInt32
    public init(raw: UInt32) { self.raw = raw }
    public init(submissionQueueSize0: UInt16, completionQueueSize0: UInt16) {
        raw = UInt32(submissionQueueSize0 & 0xFFF) | UInt32(completionQueueSize0 & 0xFFF) << 16
    }
    public var submissionQueueSize0: UInt16 { UInt16(raw & 0xFFF) }
    public var completionQueueSize0: UInt16 { UInt16((raw >> 16) & 0xFFF) }
}

/// Version, VS (§3.1.3.2): major.minor.tertiary.
public struct NVMeVersion: Hashable, Sendable, CustomStringConvertible {
    public var raw: UInt32
    public init(raw: UInt32) { self.raw = raw }
    public init(major: UInt16, minor: UInt8, tertiary: UInt8 = 0) {
        raw = UInt32(major) << 16 | UInt32(minor) << 8 | UInt32(tertiary)
    }
    public static let v1_3 = NVMeVersion(major: 1, minor: 3)
    public var description: String { "\(raw >> 16).\((raw >> 8) & 0xFF).\(raw & 0xFF)" }
}
