/// A 64-byte submission queue entry (NVMe Base Specification 2.0, §4.2, Figure 88).
///
/// | bytes | field |
/// | --- | --- |
/// | 0–3 | CDW0: opcode (7:0), fused (9:8), PSDT (15:14), command identifier (31:16) |
/// | 4–7 | NSID |
/// | 8–15 | CDW2–3 (reserved here) |
/// | 16–23 | MPTR |
/// | 24–31 | PRP entry 1 |
/// | 32–39 | PRP entry 2 |
/// | 40–63 | CDW10–CDW15 |
public struct SubmissionQueueEntry: Hashable, Sendable {
    /// Size of an entry on the wire; IOSQES = 6 (2^6).
    public static let size = 64

    /// Command Dwords 0–15 (`dwords[10]` is CDW10), in host byte order. Every
    /// field below is a view of these: the entry's layout is defined once, by the
    /// dword and bits each field names. CDW2–3 are reserved for the commands
    /// here; CDW10–15 are command specific.
    public var dwords: SIMD16<UInt32>

    public init(
        opcode: UInt8, flags: UInt8 = 0, commandIdentifier: UInt16 = 0, namespaceIdentifier: UInt32 = 0,
        prp1: UInt64 = 0, prp2: UInt64 = 0,
        cdw10: UInt32 = 0, cdw11: UInt32 = 0, cdw12: UInt32 = 0,
        cdw13: UInt32 = 0, cdw14: UInt32 = 0, cdw15: UInt32 = 0
    ) {
        dwords = SIMD16(
            UInt32(opcode) | UInt32(flags) << 8 | UInt32(commandIdentifier) << 16, namespaceIdentifier, 0, 0,
            0, 0, UInt32(truncatingIfNeeded: prp1), UInt32(truncatingIfNeeded: prp1 >> 32),
            UInt32(truncatingIfNeeded: prp2), UInt32(truncatingIfNeeded: prp2 >> 32), cdw10, cdw11,
            cdw12, cdw13, cdw14, cdw15)
    }

    /// Decodes an entry from 64 little-endian bytes.
    public init(bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count >= Self.size)
        var d = SIMD16<UInt32>()
        for i in d.indices { d[i] = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)) }
        dwords = d
    }

    /// Decodes an entry from a 64-byte array.
    public init(_ bytes: [UInt8]) {
        self = bytes.withUnsafeBytes { SubmissionQueueEntry(bytes: $0) }
    }

    /// Encodes the entry as 64 little-endian bytes into `out`.
    public func encode(into out: UnsafeMutableRawBufferPointer) {
        precondition(out.count >= Self.size)
        for i in dwords.indices { out.storeBytes(of: dwords[i].littleEndian, toByteOffset: 4 * i, as: UInt32.self) }
    }

    /// The 64 bytes of the entry.
    public var bytes: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: Self.size) { buf, n in
            encode(into: UnsafeMutableRawBufferPointer(buf))
            n = Self.size
        }
    }

    /// Dwords `low` and `low + 1` as one 64-bit field (`low` holds bits 31:0).
    private subscript(quadword low: Int) -> UInt64 {
        get { UInt64(dwords[low + 1]) << 32 | UInt64(dwords[low]) }
        set {
            dwords[low] = UInt32(truncatingIfNeeded: newValue)
            dwords[low + 1] = UInt32(truncatingIfNeeded: newValue >> 32)
        }
    }

    /// Command Dword 0: opcode (7:0), fused operation and PSDT (15:8), command
    /// identifier (31:16).
    public var cdw0: UInt32 { dwords[0] }
    public var opcode: UInt8 {
        get { UInt8(truncatingIfNeeded: dwords[0]) }
        set { dwords[0] = dwords[0] & 0xFFFF_FF00 | UInt32(newValue) }
    }
    /// CDW0 bits 15:8 (fused operation and PRP/SGL selection). Must be zero here: PRPs only.
    public var flags: UInt8 {
        get { UInt8(truncatingIfNeeded: dwords[0] >> 8) }
        set { dwords[0] = dwords[0] & 0xFFFF_00FF | UInt32(newValue) << 8 }
    }
    public var commandIdentifier: UInt16 {
        get { UInt16(truncatingIfNeeded: dwords[0] >> 16) }
        set { dwords[0] = dwords[0] & 0x0000_FFFF | UInt32(newValue) << 16 }
    }
    /// NSID, dword 1.
    public var namespaceIdentifier: UInt32 {
        get { dwords[1] }
        set { dwords[1] = newValue }
    }
    /// MPTR, dwords 5:4.
    public var metadataPointer: UInt64 {
        get { self[quadword: 4] }
        set { self[quadword: 4] = newValue }
    }
    /// PRP Entry 1, dwords 7:6.
    public var prp1: UInt64 {
        get { self[quadword: 6] }
        set { self[quadword: 6] = newValue }
    }
    /// PRP Entry 2, dwords 9:8.
    public var prp2: UInt64 {
        get { self[quadword: 8] }
        set { self[quadword: 8] = newValue }
    }
    /// Starting LBA of an NVM command: CDW11:CDW10.
    public var startingLBA: UInt64 {
        get { self[quadword: 10] }
        set { self[quadword: 10] = newValue }
    }

    /// Number of logical blocks, 0-based: CDW12 bits 15:0.
    public var numberOfLogicalBlocks0: UInt16 {
        get { UInt16(truncatingIfNeeded: dwords[12]) }
        set { dwords[12] = (dwords[12] & 0xFFFF_0000) | UInt32(newValue) }
    }

    /// Force Unit Access: CDW12 bit 30 (Read and Write).
    public static let forceUnitAccessBit: UInt32 = 1 << 30
    /// Deallocate: CDW12 bit 25 (Write Zeroes).
    public static let deallocateBit: UInt32 = 1 << 25
    /// Write Zeroes CDW13 bit 31, a vendor extension of this emulation (CDW13 is
    /// reserved for Write Zeroes in the NVM Command Set): zero only if it can be
    /// done without writing zeroes, else fail with ``NVMeStatus/zeroingNotFast``
    /// (what NBD's `NBD_CMD_FLAG_FAST_ZERO` asks of a server).
    public static let fastZeroOnlyBit: UInt32 = 1 << 31
}
