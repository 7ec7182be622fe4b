/// One 16-byte range of a Dataset Management command's data (NVM Command Set
/// Specification 1.0, §3.2.3, Figure 39): context attributes (bytes 3:0), length
/// in logical blocks (bytes 7:4, 1-based) and starting LBA (bytes 15:8).
public struct DatasetManagementRange: Hashable, Sendable {
    public static let size = 16
    /// At most 256 ranges per command (CDW10.NR is 0-based, 8 bits).
    public static let maximumCount = 256

    public var contextAttributes: UInt32
    public var blockCount: UInt32
    public var startingLBA: UInt64

    public init(startingLBA: UInt64, blockCount: UInt32, contextAttributes: UInt32 = 0) {
        self.startingLBA = startingLBA
        self.blockCount = blockCount
        self.contextAttributes = contextAttributes
    }

    public init(bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count >= Self.size)
        contextAttributes = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
        blockCount = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        startingLBA = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
    }

    public func encode(into out: UnsafeMutableRawBufferPointer) {
        precondition(out.count >= Self.size)
        out.storeBytes(of: contextAttributes.littleEndian, toByteOffset: 0, as: UInt32.self)
        out.storeBytes(of: blockCount.littleEndian, toByteOffset: 4, as: UInt32.self)
        out.storeBytes(of: startingLBA.littleEndian, toByteOffset: 8, as: UInt64.self)
    }

    /// Dataset Management CDW11 bit 2: Attribute – Deallocate (AD).
    public static let deallocateAttribute: UInt32 = 1 << 2
}

/// Log page identifiers (NVMe Base Specification 2.0, §5.16.1, Figure 202) this
/// device answers.
public enum LogPageIdentifier: UInt8, Sendable {
    case errorInformation = 0x01
    case smartHealthInformation = 0x02
    case firmwareSlotInformation = 0x03
}

/// Asynchronous event types and the error-status information values this device
/// reports (NVMe Base Specification 2.0, §5.2, Figures 146–147).
public enum AsynchronousEvent {
    public static let typeErrorStatus: UInt8 = 0
    /// "Write to Invalid Doorbell Register".
    public static let invalidDoorbellRegister: UInt8 = 0x00
    /// "Invalid Doorbell Write Value".
    public static let invalidDoorbellWriteValue: UInt8 = 0x01

    /// Completion DW0 of an Asynchronous Event Request: type (2:0), info (15:8), log page (23:16).
    public static func completionDW0(type: UInt8, info: UInt8, logPage: UInt8) -> UInt32 {
        UInt32(type & 0x7) | UInt32(info) << 8 | UInt32(logPage) << 16
    }
}

/// The namespace identifier that means "every namespace" (NVMe Base Specification 2.0, §3.2.1.2).
public let broadcastNamespaceID: UInt32 = 0xFFFF_FFFF
