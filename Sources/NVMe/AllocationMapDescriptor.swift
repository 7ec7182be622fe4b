/// The data returned by this device's vendor-specific I/O command **Get Allocation
/// Map** (opcode 82h, see ``IOOpcode/getAllocationMap``). Vendor-specific opcodes
/// 80h–FFh are reserved for this by the NVM Command Set Specification 1.0, §3.
///
/// Command: NSID; CDW11:CDW10 starting LBA; CDW12 number of logical blocks to
/// describe (1-based, 32 bits); PRP1/PRP2 a data buffer of CDW13 bytes (a
/// multiple of 16, at least 32, at most one MDTS). The controller answers with a
/// 16-byte header — bytes 3:0 the number of descriptors returned, bytes 15:8 the
/// LBA just after the last described block — followed by descriptors of 16 bytes:
/// bytes 7:0 starting LBA, bytes 11:8 number of blocks (1-based), bytes 15:12
/// attributes (bit 0: deallocated, reads as zeroes). Descriptors are in LBA
/// order, adjacent, and cover the range from the starting LBA on; when the
/// buffer fills before the range is covered the header says where it stopped.
public struct AllocationMapDescriptor: Hashable, Sendable {
    public static let size = 16
    public static let headerSize = 16

    public var startingLBA: UInt64
    public var blockCount: UInt32
    public var deallocated: Bool

    public init(startingLBA: UInt64, blockCount: UInt32, deallocated: Bool) {
        self.startingLBA = startingLBA
        self.blockCount = blockCount
        self.deallocated = deallocated
    }

    /// Encodes a header plus descriptors into `out` (which must be large enough).
    public static func encode(
        _ descriptors: [AllocationMapDescriptor], nextLBA: UInt64,
        into out: UnsafeMutableRawBufferPointer
    ) {
        out.storeBytes(of: UInt32(descriptors.count).littleEndian, toByteOffset: 0, as: UInt32.self)
        out.storeBytes(of: UInt32(0), toByteOffset: 4, as: UInt32.self)
        out.storeBytes(of: nextLBA.littleEndian, toByteOffset: 8, as: UInt64.self)
        for (i, d) in descriptors.enumerated() {
            let o = headerSize + i * size
            out.storeBytes(of: d.startingLBA.littleEndian, toByteOffset: o, as: UInt64.self)
            out.storeBytes(of: d.blockCount.littleEndian, toByteOffset: o + 8, as: UInt32.self)
            out.storeBytes(of: UInt32(d.deallocated ? 1 : 0).littleEndian, toByteOffset: o + 12, as: UInt32.self)
        }
    }

    /// Decodes a buffer written by ``encode(_:nextLBA:into:)``; `nil` when malformed.
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> (
        descriptors: [AllocationMapDescriptor], nextLBA: UInt64
    )? {
        guard bytes.count >= headerSize else { return nil }
        let n = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self)))
        let next = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        guard n <= (bytes.count - headerSize) / size else { return nil }
        var out: [AllocationMapDescriptor] = []
        out.reserveCapacity(n)
        for i in 0..<n {
            let o = headerSize + i * size
            out.append(
                AllocationMapDescriptor(
                    startingLBA: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: o, as: UInt64.self)),
                    blockCount: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: o + 8, as: UInt32.self)),
                    deallocated: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: o + 12, as: UInt32.self)) & 1
                        != 0))
        }
        return (out, next)
    }
}
