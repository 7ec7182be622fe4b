/// The Identify Namespace data structure for the NVM command set, CNS 00h (NVM
/// Command Set Specification 1.0, §4.1.5.1, Figure 97). One LBA format.
public struct IdentifyNamespace: Hashable, Sendable {
    public static let size = 4096

    /// NSZE, bytes 7:0: size in logical blocks.
    public var size: UInt64 = 0
    /// NCAP, bytes 15:8: capacity in logical blocks.
    public var capacity: UInt64 = 0
    /// NUSE, bytes 23:16: logical blocks allocated (thin provisioning).
    public var utilization: UInt64 = 0
    /// NSFEAT, byte 24. Bit 0 THINP: NUSE reports allocation.
    public var features: UInt8 = 1
    /// NLBAF, byte 25: number of LBA formats, 0-based.
    public var numberOfLBAFormats0: UInt8 = 0
    /// FLBAS, byte 26: the format in use (bits 3:0).
    public var formattedLBASize: UInt8 = 0
    /// NMIC, byte 30: bit 0, may be attached to several controllers.
    public var multipathCapabilities: UInt8 = 0
    /// DLFEAT, byte 33. Bits 2:0 = 001b: a read of a deallocated block returns
    /// zeroes; bit 3: Write Zeroes supports the Deallocate bit.
    public var deallocateLogicalBlockFeatures: UInt8 = 0b1001
    /// NGUID, bytes 119:104.
    public var namespaceGloballyUniqueIdentifier: [UInt8] = Array(repeating: 0, count: 16)
    /// EUI64, bytes 127:120.
    public var ieeeExtendedUniqueIdentifier: UInt64 = 0
    /// LBADS of LBA format 0 (bytes 131:128, bits 23:16): log2 of the LBA data size.
    public var lbaDataSizeShift: UInt8 = 9
    /// NSATTR, byte 99: bit 0 write protected.
    public var attributes: UInt8 = 0

    public init() {}

    public var blockSize: Int { 1 << Int(lbaDataSizeShift) }
    public var isWriteProtected: Bool { attributes & 1 != 0 }

    public func encode() -> [UInt8] {
        var b = [UInt8](repeating: 0, count: Self.size)
        b.put64(size, at: 0)
        b.put64(capacity, at: 8)
        b.put64(utilization, at: 16)
        b[24] = features
        b[25] = numberOfLBAFormats0
        b[26] = formattedLBASize
        b[30] = multipathCapabilities
        b[33] = deallocateLogicalBlockFeatures
        b[99] = attributes
        for i in 0..<16 {
            b[104 + i] = i < namespaceGloballyUniqueIdentifier.count ? namespaceGloballyUniqueIdentifier[i] : 0
        }
        // EUI64 is big-endian on the wire (an IEEE identifier).
        for i in 0..<8 { b[120 + i] = UInt8(truncatingIfNeeded: ieeeExtendedUniqueIdentifier >> (8 * UInt64(7 - i))) }
        b[128 + 2] = lbaDataSizeShift
        return b
    }

    public init(decoding b: [UInt8]) {
        precondition(b.count >= Self.size)
        size = b.get64(0)
        capacity = b.get64(8)
        utilization = b.get64(16)
        features = b[24]
        numberOfLBAFormats0 = b[25]
        formattedLBASize = b[26]
        multipathCapabilities = b[30]
        deallocateLogicalBlockFeatures = b[33]
        attributes = b[99]
        namespaceGloballyUniqueIdentifier = Array(b[104..<120])
        ieeeExtendedUniqueIdentifier = (0..<8).reduce(0) { $0 << 8 | UInt64(b[120 + $1]) }
        let format = Int(formattedLBASize & 0xF)
        lbaDataSizeShift = b[128 + 4 * format + 2]
    }
}
