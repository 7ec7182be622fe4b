import NVMe

/// What the driver learned about one namespace from Identify Namespace (NVM
/// Command Set Specification 1.0, §4.1.5.1).
public struct NamespaceInfo: Hashable, Sendable {
    public var id: UInt32
    /// log2 of the LBA data size (LBADS of the format in use).
    public var blockSizeShift: UInt8
    /// NSZE.
    public var blockCount: UInt64
    /// NSATTR bit 0.
    public var isWriteProtected: Bool
    /// DLFEAT bits 2:0 = 001b: deallocated blocks read as zeroes.
    public var deallocatedReadsZeroes: Bool
    /// DLFEAT bit 3: Write Zeroes honours the Deallocate bit.
    public var writeZeroesDeallocates: Bool
    /// NUSE.
    public var utilization: UInt64
    /// I/O Command Set Independent Identify Namespace NSFEAT bit 4 (Rotational Media).
    public var isRotational = false

    public init(id: UInt32, identify: IdentifyNamespace) {
        self.id = id
        blockSizeShift = identify.lbaDataSizeShift
        blockCount = identify[.nsze]
        isWriteProtected = identify.isWriteProtected
        deallocatedReadsZeroes = identify[.dlfeat] & 0x7 == 1
        writeZeroesDeallocates = identify[.dlfeat] & 0x8 != 0
        utilization = identify[.nuse]
    }

    public var blockSize: Int { 1 << Int(blockSizeShift) }
    public var byteCount: UInt64 { blockCount << UInt64(blockSizeShift) }
}

/// The limits the driver splits requests at, fixed at bring-up.
public struct TransferLimits: Hashable, Sendable {
    /// MDTS in bytes (4096 << MDTS), or `Int.max` when the controller sets no limit.
    public var maximumTransferBytes: Int
    /// The driver's own cap when MDTS is 0 (Linux caps at 2 MiB... we keep 4 MiB).
    public static let driverCap = 4 << 20

    public init(mdts: UInt8) {
        maximumTransferBytes = mdts == 0 ? Self.driverCap : min(4096 << Int(mdts), 64 << 20)
    }

    /// Blocks per Read/Write command for a namespace (also bounded by NLB's 16 bits).
    public func maximumBlocks(_ ns: NamespaceInfo) -> Int {
        min(maximumTransferBytes >> Int(ns.blockSizeShift), 65536)
    }
}
