/// The Identify Controller data structure, CNS 01h (NVMe Base Specification 2.0,
/// §5.17.2.1, Figure 275). Only the fields this device fills are modelled; the
/// rest of the 4096 bytes is zero.
public struct IdentifyController: Hashable, Sendable {
    public static let size = 4096

    /// VID, bytes 1:0.
    public var pciVendorID: UInt16 = 0x1B36  // Red Hat / QEMU, as QEMU's emulated NVMe
    /// SSVID, bytes 3:2.
    public var subsystemVendorID: UInt16 = 0x1AF4
    /// SN, bytes 23:4, ASCII padded with spaces.
    public var serialNumber: String = "NVMENBD0001"
    /// MN, bytes 63:24.
    public var modelNumber: String = "nvme-nbd emulated controller"
    /// FR, bytes 71:64.
    public var firmwareRevision: String = "1.0"
    /// RAB, byte 72: recommended arbitration burst (2^n commands).
    public var recommendedArbitrationBurst: UInt8 = 6
    /// IEEE OUI, bytes 75:73.
    public var ieeeOUI: UInt32 = 0x525400
    /// MDTS, byte 77: maximum data transfer size, `2^MDTS` minimum pages; 0 = no limit.
    public var maximumDataTransferSize: UInt8 = 7
    /// CNTLID, bytes 79:78.
    public var controllerID: UInt16 = 0
    /// VER, bytes 83:80.
    public var version: NVMeVersion = .v1_3
    /// OACS, bytes 257:256. Bit 8: Doorbell Buffer Config supported.
    public var optionalAdminCommandSupport: UInt16 = 1 << 8
    /// ACL, byte 258: abort command limit, 0-based.
    public var abortCommandLimit: UInt8 = 3
    /// AERL, byte 259: asynchronous event request limit, 0-based.
    public var asynchronousEventRequestLimit: UInt8 = 3
    /// LPA, byte 261.
    public var logPageAttributes: UInt8 = 0
    /// SQES, byte 512: required (3:0) and maximum (7:4) SQ entry size, log2.
    public var submissionQueueEntrySize: UInt8 = 0x66
    /// CQES, byte 513.
    public var completionQueueEntrySize: UInt8 = 0x44
    /// MAXCMD, bytes 515:514.
    public var maximumOutstandingCommands: UInt16 = 0
    /// NN, bytes 519:516: number of namespaces.
    public var numberOfNamespaces: UInt32 = 1
    /// ONCS, bytes 521:520. Bit 2 Dataset Management, bit 3 Write Zeroes.
    public var optionalNVMCommandSupport: UInt16 = (1 << 2) | (1 << 3)
    /// VWC, byte 525: bit 0 volatile write cache present.
    public var volatileWriteCache: UInt8 = 0
    /// SGLS, bytes 539:536: 0, SGLs not supported (PRPs only).
    public var sglSupport: UInt32 = 0
    /// SUBNQN, bytes 1023:768.
    public var subsystemNQN: String = "nqn.2026-11.io.nvme-nbd:controller"

    public init() {}

    /// OACS bit 8.
    public var supportsDoorbellBufferConfig: Bool {
        get { optionalAdminCommandSupport & (1 << 8) != 0 }
        set {
            if newValue { optionalAdminCommandSupport |= 1 << 8 } else { optionalAdminCommandSupport &= ~(1 << 8) }
        }
    }

    public func encode() -> [UInt8] {
        var b = [UInt8](repeating: 0, count: Self.size)
        b.put16(pciVendorID, at: 0)
        b.put16(subsystemVendorID, at: 2)
        b.putASCII(serialNumber, at: 4, width: 20)
        b.putASCII(modelNumber, at: 24, width: 40)
        b.putASCII(firmwareRevision, at: 64, width: 8)
        b[72] = recommendedArbitrationBurst
        b[73] = UInt8(truncatingIfNeeded: ieeeOUI)
        b[74] = UInt8(truncatingIfNeeded: ieeeOUI >> 8)
        b[75] = UInt8(truncatingIfNeeded: ieeeOUI >> 16)
        b[77] = maximumDataTransferSize
        b.put16(controllerID, at: 78)
        b.put32(version.raw, at: 80)
        b.put16(optionalAdminCommandSupport, at: 256)
        b[258] = abortCommandLimit
        b[259] = asynchronousEventRequestLimit
        b[261] = logPageAttributes
        b[512] = submissionQueueEntrySize
        b[513] = completionQueueEntrySize
        b.put16(maximumOutstandingCommands, at: 514)
        b.put32(numberOfNamespaces, at: 516)
        b.put16(optionalNVMCommandSupport, at: 520)
        b[525] = volatileWriteCache
        b.put32(sglSupport, at: 536)
        b.putASCII(subsystemNQN, at: 768, width: 256, pad: 0)
        return b
    }

    public init(decoding b: [UInt8]) {
        precondition(b.count >= Self.size)
        pciVendorID = b.get16(0)
        subsystemVendorID = b.get16(2)
        serialNumber = b.getASCII(4, 20)
        modelNumber = b.getASCII(24, 40)
        firmwareRevision = b.getASCII(64, 8)
        recommendedArbitrationBurst = b[72]
        ieeeOUI = UInt32(b[73]) | UInt32(b[74]) << 8 | UInt32(b[75]) << 16
        maximumDataTransferSize = b[77]
        controllerID = b.get16(78)
        version = NVMeVersion(raw: b.get32(80))
        optionalAdminCommandSupport = b.get16(256)
        abortCommandLimit = b[258]
        asynchronousEventRequestLimit = b[259]
        logPageAttributes = b[261]
        submissionQueueEntrySize = b[512]
        completionQueueEntrySize = b[513]
        maximumOutstandingCommands = b.get16(514)
        numberOfNamespaces = b.get32(516)
        optionalNVMCommandSupport = b.get16(520)
        volatileWriteCache = b[525]
        sglSupport = b.get32(536)
        subsystemNQN = b.getASCII(768, 256)
    }
}

extension [UInt8] {
    public mutating func put16(_ v: UInt16, at o: Int) {
        self[o] = UInt8(truncatingIfNeeded: v); self[o + 1] = UInt8(truncatingIfNeeded: v >> 8)
    }
    public mutating func put32(_ v: UInt32, at o: Int) {
        for i in 0..<4 { self[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) }
    }
    public mutating func put64(_ v: UInt64, at o: Int) {
        for i in 0..<8 { self[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
    }
    mutating func putASCII(_ s: String, at o: Int, width: Int, pad: UInt8 = 0x20) {
        let u = Array(s.utf8.prefix(width))
        for i in 0..<width { self[o + i] = i < u.count ? u[i] : pad }
    }
    public func get16(_ o: Int) -> UInt16 { UInt16(self[o]) | UInt16(self[o + 1]) << 8 }
    public func get32(_ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(self[o + $1]) << (8 * UInt32($1)) } }
    public func get64(_ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(self[o + $1]) << (8 * UInt64($1)) } }
    func getASCII(_ o: Int, _ width: Int) -> String {
        let bytes = self[o..<(o + width)].prefix { $0 != 0 }
        return String(decoding: bytes, as: UTF8.self).trimmingTrailingSpaces()
    }
}

extension String {
    func trimmingTrailingSpaces() -> String {
        var s = Substring(self)
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
