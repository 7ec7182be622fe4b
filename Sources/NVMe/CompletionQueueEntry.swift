/// A 16-byte completion queue entry (NVMe Base Specification 2.0, §4.6, Figure 89).
///
/// | dword | field |
/// | --- | --- |
/// | DW0 | command specific |
/// | DW1 | reserved |
/// | DW2 | SQ head pointer (15:0), SQ identifier (31:16) |
/// | DW3 | command identifier (15:0), phase tag (16), status field (31:17) |
///
/// The controller makes DW0–DW2 visible before DW3, the dword carrying the phase tag.
public struct CompletionQueueEntry: Hashable, Sendable, CustomStringConvertible {
    public static let size = 16

    public var dw0: UInt32
    public var dw1: UInt32
    public var submissionQueueHead: UInt16
    public var submissionQueueIdentifier: UInt16
    public var commandIdentifier: UInt16
    public var phase: Bool
    public var status: NVMeStatus

    public init(
        dw0: UInt32 = 0, dw1: UInt32 = 0, submissionQueueHead: UInt16, submissionQueueIdentifier: UInt16,
        commandIdentifier: UInt16, phase: Bool, status: NVMeStatus
    ) {
        self.dw0 = dw0
        self.dw1 = dw1
        self.submissionQueueHead = submissionQueueHead
        self.submissionQueueIdentifier = submissionQueueIdentifier
        self.commandIdentifier = commandIdentifier
        self.phase = phase
        self.status = status
    }

    /// Decodes from the four dwords.
    public init(dw0: UInt32, dw1: UInt32, dw2: UInt32, dw3: UInt32) {
        self.dw0 = dw0
        self.dw1 = dw1
        submissionQueueHead = UInt16(truncatingIfNeeded: dw2)
        submissionQueueIdentifier = UInt16(truncatingIfNeeded: dw2 >> 16)
        commandIdentifier = UInt16(truncatingIfNeeded: dw3)
        phase = dw3 & (1 << 16) != 0
        status = NVMeStatus(field: UInt16(truncatingIfNeeded: dw3 >> 17))
    }

    /// Decodes from 16 little-endian bytes.
    public init(bytes: UnsafeRawBufferPointer) {
        func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
        self.init(dw0: u32(0), dw1: u32(4), dw2: u32(8), dw3: u32(12))
    }

    public var dw2: UInt32 { UInt32(submissionQueueHead) | UInt32(submissionQueueIdentifier) << 16 }
    public var dw3: UInt32 {
        UInt32(commandIdentifier) | (phase ? 1 << 16 : 0) | UInt32(status.field) << 17
    }

    /// The 16 bytes of the entry.
    public var bytes: [UInt8] {
        var out = [UInt8]()
        for d in [dw0, dw1, dw2, dw3] {
            withUnsafeBytes(of: d.littleEndian) { out.append(contentsOf: $0) }
        }
        return out
    }

    public var description: String {
        "CQE(cid \(commandIdentifier), sq \(submissionQueueIdentifier), sqhd \(submissionQueueHead), p \(phase ? 1 : 0), \(status), dw0 0x\(String(dw0, radix: 16)))"
    }
}
