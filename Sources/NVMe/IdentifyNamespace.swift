/// The Identify Namespace data structure for the NVM command set, CNS 00h (NVM
/// Command Set Specification 1.0, §4.1.5.1, Figure 97). One LBA format.
public struct IdentifyNamespace: IdentifyStructure {
    public var bytes: [UInt8]

    /// The fields this device fills, named as `nvme id-ns` names them, in byte order.
    public enum Field: String, IdentifyFieldKey {
        case nsze, ncap, nuse, nsfeat, nlbaf, flbas, nmic, dlfeat, nsattr, nguid, eui64, lbaf0

        public var bytes: Range<Int> {
            switch self {
            case .nsze: 0..<8  // Namespace Size, in logical blocks
            case .ncap: 8..<16  // Namespace Capacity
            case .nuse: 16..<24  // Namespace Utilization: blocks allocated (thin provisioning)
            case .nsfeat: 24..<25  // Namespace Features; bit 0 THINP: NUSE reports allocation
            case .nlbaf: 25..<26  // Number of LBA Formats, 0-based
            case .flbas: 26..<27  // Formatted LBA Size: the format in use (bits 3:0)
            case .nmic: 30..<31  // Multi-path I/O and Namespace Sharing; bit 0: shared
            // Deallocate Logical Block Features. Bits 2:0 = 001b: a deallocated block
            // reads as zeroes; bit 3: Write Zeroes supports the Deallocate bit.
            case .dlfeat: 33..<34
            case .nsattr: 99..<100  // Namespace Attributes; bit 0: write protected
            case .nguid: 104..<120  // Namespace Globally Unique Identifier
            case .eui64: 120..<128  // IEEE Extended Unique Identifier, big endian
            case .lbaf0: 128..<132  // LBA Format 0: LBADS (log2 of the data size) in bits 23:16
            }
        }

        public var format: IdentifyFieldFormat {
            switch self {
            case .nguid, .eui64: .identifier
            case .nsze, .ncap, .nuse, .nsfeat, .flbas, .lbaf0: .hexadecimal
            case .nlbaf, .nmic, .dlfeat, .nsattr: .decimal
            }
        }
    }

    /// An empty namespace of 512-byte blocks that reports its allocation and reads
    /// deallocated blocks as zeroes.
    public init() {
        bytes = [UInt8](repeating: 0, count: Self.size)
        self[.nsfeat] = 1
        self[.dlfeat] = 0b1001
        lbaDataSizeShift = 9
    }

    /// LBADS of the format FLBAS selects: log2 of the logical block size.
    public var lbaDataSizeShift: UInt8 {
        get { bytes[lbadsOffset] }
        set { bytes[lbadsOffset] = newValue }
    }
    /// LBADS is bits 23:16 of the selected LBA Format descriptor (4 bytes each from byte 128).
    private var lbadsOffset: Int { Field.lbaf0.bytes.lowerBound + 4 * Int(self[.flbas] & 0xF) + 2 }
    public var blockSize: Int { 1 << Int(lbaDataSizeShift) }
    public var isWriteProtected: Bool { self[.nsattr] & 1 != 0 }
}
