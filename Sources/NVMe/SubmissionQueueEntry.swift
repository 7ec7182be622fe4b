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

    public var opcode: UInt8
    /// CDW0 bits 15:8 (fused operation and PRP/SGL selection). Must be zero here: PRPs only.
    public var flags: UInt8
    public var commandIdentifier: UInt16
    public var namespaceIdentifier: UInt32
    public var cdw2: UInt32
    public var cdw3: UInt32
    public var metadataPointer: UInt64
    public var prp1: UInt64
    public var prp2: UInt64
    public var cdw10: UInt32
    public var cdw11: UInt32
    public var cdw12: UInt32
    public var cdw13: UInt32
    public var cdw14: UInt32
    public var cdw15: UInt32

    public init(
        opcode: UInt8, flags: UInt8 = 0, commandIdentifier: UInt16 = 0, namespaceIdentifier: UInt32 = 0,
        prp1: UInt64 = 0, prp2: UInt64 = 0,
        cdw10: UInt32 = 0, cdw11: UInt32 = 0, cdw12: UInt32 = 0,
        cdw13: UInt32 = 0, cdw14: UInt32 = 0, cdw15: UInt32 = 0
    ) {
        self.opcode = opcode
        self.flags = flags
        self.commandIdentifier = commandIdentifier
        self.namespaceIdentifier = namespaceIdentifier
        self.cdw2 = 0
        self.cdw3 = 0
        self.metadataPointer = 0
        self.prp1 = prp1
        self.prp2 = prp2
        self.cdw10 = cdw10
        self.cdw11 = cdw11
        self.cdw12 = cdw12
        self.cdw13 = cdw13
        self.cdw14 = cdw14
        self.cdw15 = cdw15
    }

    /// Decodes an entry from 64 little-endian bytes.
    public init(bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count >= Self.size)
        func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
        func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
        let cdw0 = u32(0)
        opcode = UInt8(truncatingIfNeeded: cdw0)
        flags = UInt8(truncatingIfNeeded: cdw0 >> 8)
        commandIdentifier = UInt16(truncatingIfNeeded: cdw0 >> 16)
        namespaceIdentifier = u32(4)
        cdw2 = u32(8)
        cdw3 = u32(12)
        metadataPointer = u64(16)
        prp1 = u64(24)
        prp2 = u64(32)
        cdw10 = u32(40)
        cdw11 = u32(44)
        cdw12 = u32(48)
        cdw13 = u32(52)
        cdw14 = u32(56)
        cdw15 = u32(60)
    }

    /// Decodes an entry from a 64-byte array.
    public init(_ bytes: [UInt8]) {
        self = bytes.withUnsafeBytes { SubmissionQueueEntry(bytes: $0) }
    }

    /// Encodes the entry as 64 little-endian bytes into `out`.
    public func encode(into out: UnsafeMutableRawBufferPointer) {
        precondition(out.count >= Self.size)
        func put(_ v: UInt32, _ o: Int) { out.storeBytes(of: v.littleEndian, toByteOffset: o, as: UInt32.self) }
        func put(_ v: UInt64, _ o: Int) { out.storeBytes(of: v.littleEndian, toByteOffset: o, as: UInt64.self) }
        put(cdw0, 0)
        put(namespaceIdentifier, 4)
        put(cdw2, 8)
        put(cdw3, 12)
        put(metadataPointer, 16)
        put(prp1, 24)
        put(prp2, 32)
        put(cdw10, 40)
        put(cdw11, 44)
        put(cdw12, 48)
        put(cdw13, 52)
        put(cdw14, 56)
        put(cdw15, 60)
    }

    /// The 64 bytes of the entry.
    public var bytes: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: Self.size) { buf, n in
            encode(into: UnsafeMutableRawBufferPointer(buf))
            n = Self.size
        }
    }

    /// Command Dword 0.
    public var cdw0: UInt32 {
        UInt32(opcode) | UInt32(flags) << 8 | UInt32(commandIdentifier) << 16
    }

    /// Starting LBA of an NVM command: CDW11:CDW10.
    public var startingLBA: UInt64 {
        get { UInt64(cdw11) << 32 | UInt64(cdw10) }
        set { cdw10 = UInt32(truncatingIfNeeded: newValue); cdw11 = UInt32(truncatingIfNeeded: newValue >> 32) }
    }

    /// Number of logical blocks, 0-based: CDW12 bits 15:0.
    public var numberOfLogicalBlocks0: UInt16 {
        get { UInt16(truncatingIfNeeded: cdw12) }
        set { cdw12 = (cdw12 & 0xFFFF_0000) | UInt32(newValue) }
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
