import BlockBackends
import NVMe

/// One NVM namespace: an NSID, its LBA format, and the backend that stores it
/// (NVMe Base Specification 2.0, §3.2.1; NVM Command Set Specification 1.0, §4.1.5.1).
public final class Namespace: Sendable {
    public let id: UInt32
    public let backend: any BlockBackend
    /// log2 of the logical block size: 9 (512 bytes) or 12 (4096 bytes).
    public let blockSizeShift: UInt8

    /// - Throws: when `blockSize` is not 512 or 4096, the NSID is 0 or broadcast, or
    ///   the backend's size is not a whole number of blocks.
    public init(id: UInt32 = 1, backend: any BlockBackend, blockSize: Int = 512) throws(ControllerConfigurationError) {
        guard blockSize == 512 || blockSize == 4096 else {
            throw .invalid("LBA size \(blockSize): accepted 512 or 4096")
        }
        guard id != 0, id != broadcastNamespaceID else { throw .invalid("namespace id \(id) is reserved") }
        guard backend.byteCount > 0, backend.byteCount % UInt64(blockSize) == 0 else {
            throw .invalid("namespace size \(backend.byteCount) is not a positive multiple of the LBA size \(blockSize)")
        }
        self.id = id
        self.backend = backend
        blockSizeShift = blockSize == 512 ? 9 : 12
    }

    public var blockSize: Int { 1 << Int(blockSizeShift) }
    /// NSZE: size in logical blocks.
    public var blockCount: UInt64 { backend.byteCount >> UInt64(blockSizeShift) }

    /// Whether `[lba, lba+count)` lies inside the namespace, without overflow.
    @inline(__always)
    public func contains(lba: UInt64, count: UInt64) -> Bool {
        lba <= blockCount && count <= blockCount - lba
    }

    /// The Identify Namespace structure this namespace answers with.
    public func identify(allocatedBytes: UInt64?) -> IdentifyNamespace {
        var id = IdentifyNamespace()
        id.size = blockCount
        id.capacity = blockCount
        id.utilization = allocatedBytes.map { ($0 + UInt64(blockSize) - 1) >> UInt64(blockSizeShift) } ?? blockCount
        id.features = allocatedBytes == nil ? 0 : 1
        id.lbaDataSizeShift = blockSizeShift
        id.attributes = backend.isReadOnly ? 1 : 0
        id.ieeeExtendedUniqueIdentifier = 0x5254_0000_0000_0000 | UInt64(self.id)
        var nguid = [UInt8](repeating: 0, count: 16)
        nguid[0] = 0x52; nguid[1] = 0x54; nguid[15] = UInt8(truncatingIfNeeded: self.id)
        id.namespaceGloballyUniqueIdentifier = nguid
        return id
    }
}
