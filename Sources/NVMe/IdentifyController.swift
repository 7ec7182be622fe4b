/// The Identify Controller data structure, CNS 01h (NVMe Base Specification 2.0,
/// §5.17.2.1, Figure 275). Only the fields in ``Field`` are filled; the rest of
/// the 4096 bytes is zero.
public struct IdentifyController: IdentifyStructure {
    public var bytes: [UInt8]

    /// The fields this device fills, named as `nvme id-ctrl` names them, in byte order.
    public enum Field: String, IdentifyFieldKey {
        case vid, ssvid, sn, mn, fr, rab, ieee, cmic, mdts, cntlid, ver, oacs, acl, aerl, frmw, lpa
        case sqes, cqes, maxcmd, nn, oncs, fuses, fna, vwc, sgls, subnqn

        public var bytes: Range<Int> {
            switch self {
            case .vid: 0..<2  // PCI Vendor ID
            case .ssvid: 2..<4  // PCI Subsystem Vendor ID
            case .sn: 4..<24  // Serial Number
            case .mn: 24..<64  // Model Number
            case .fr: 64..<72  // Firmware Revision
            case .rab: 72..<73  // Recommended Arbitration Burst, 2^n commands
            case .ieee: 73..<76  // IEEE OUI Identifier
            case .cmic: 76..<77  // Controller Multi-Path I/O and Namespace Sharing Capabilities
            case .mdts: 77..<78  // Maximum Data Transfer Size, 2^n minimum pages; 0: no limit
            case .cntlid: 78..<80  // Controller ID
            case .ver: 80..<84  // Version
            case .oacs: 256..<258  // Optional Admin Command Support; bit 8: Doorbell Buffer Config
            case .acl: 258..<259  // Abort Command Limit, 0-based
            case .aerl: 259..<260  // Asynchronous Event Request Limit, 0-based
            case .frmw: 260..<261  // Firmware Updates
            case .lpa: 261..<262  // Log Page Attributes
            case .sqes: 512..<513  // Submission Queue Entry Size: required (3:0) and maximum (7:4), log2
            case .cqes: 513..<514  // Completion Queue Entry Size
            case .maxcmd: 514..<516  // Maximum Outstanding Commands
            case .nn: 516..<520  // Number of Namespaces
            case .oncs: 520..<522  // Optional NVM Command Support; bit 2 DSM, bit 3 Write Zeroes
            case .fuses: 522..<524  // Fused Operation Support
            case .fna: 524..<525  // Format NVM Attributes
            case .vwc: 525..<526  // Volatile Write Cache; bit 0: present
            case .sgls: 536..<540  // SGL Support; 0: PRPs only
            case .subnqn: 768..<1024  // NVM Subsystem NVMe Qualified Name
            }
        }

        public var format: IdentifyFieldFormat {
            switch self {
            case .sn, .mn, .fr: .text(pad: 0x20)
            case .subnqn: .text(pad: 0)
            case .ieee: .hexadecimalDigits(6)
            case .vid, .ssvid, .cntlid, .ver, .oacs, .lpa, .sqes, .cqes, .oncs, .vwc, .sgls: .hexadecimal
            case .rab, .cmic, .mdts, .acl, .aerl, .frmw, .maxcmd, .nn, .fuses, .fna: .decimal
            }
        }
    }

    /// This device's values: QEMU's vendor IDs, NVMe 1.3, MDTS 7 (512 KiB), Doorbell
    /// Buffer Config, 64-byte SQ and 16-byte CQ entries, Dataset Management and
    /// Write Zeroes.
    public init() {
        bytes = [UInt8](repeating: 0, count: Self.size)
        self[.vid] = 0x1B36  // Red Hat / QEMU, as QEMU's emulated NVMe
        self[.ssvid] = 0x1AF4
        self[text: .sn] = "NVMENBD0001"
        self[text: .mn] = "nvme-nbd emulated controller"
        self[text: .fr] = "1.0"
        self[.rab] = 6
        self[.ieee] = 0x525400
        self[.mdts] = 7
        self[.ver] = UInt64(NVMeVersion.v1_3.raw)
        self[.oacs] = 1 << 8
        self[.acl] = 3
        self[.aerl] = 3
        self[.sqes] = 0x66
        self[.cqes] = 0x44
        self[.nn] = 1
        self[.oncs] = 1 << 2 | 1 << 3
        self[text: .subnqn] = "nqn.2026-11.io.nvme-nbd:controller"
    }

    /// OACS bit 8.
    public var supportsDoorbellBufferConfig: Bool {
        get { self[.oacs] & (1 << 8) != 0 }
        set { self[.oacs] = newValue ? self[.oacs] | 1 << 8 : self[.oacs] & ~(1 << 8) }
    }

    public var version: NVMeVersion { NVMeVersion(raw: UInt32(self[.ver])) }
}
