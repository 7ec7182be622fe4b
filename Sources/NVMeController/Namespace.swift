import BlockBackends
import NVMe

/// One NVM namespace: an NSID, its LBA format, the backend that stores it, and
/// how the backend's operations run (NVMe Base Specification 2.0, §3.2.1; NVM
/// Command Set Specification 1.0, §4.1.5.1).
///
/// The namespace covers the backend's size rounded up to whole logical blocks;
/// the controller clips every transfer at the backend's last byte (reads of the
/// padding return zeroes, writes to it are dropped), so an image of any size can
/// be served whole.
public final class Namespace: Sendable {
    public let id: UInt32
    public let backend: any BlockBackend
    /// log2 of the logical block size: 9 (512 bytes) or 12 (4096 bytes).
    public let blockSizeShift: UInt8
    /// How backend operations run: inline on the controller thread, on worker
    /// threads, or on io_uring.
    public let io: StorageIO
    /// Commands of this namespace whose backend work may be in flight at once;
    /// at the bound the controller stops fetching (the host sees a full queue).
    public let maximumInFlight: Int

    /// Commands in flight per namespace by default.
    public static let defaultMaximumInFlight = 256

    /// - Parameters:
    ///   - io: `nil` picks io_uring for files and block devices, inline otherwise.
    /// - Throws: when `blockSize` is not 512 or 4096, the NSID is 0 or broadcast, the
    ///   backend is empty, or the in-flight bound is below 1.
    public init(
        id: UInt32 = 1, backend: any BlockBackend, blockSize: Int = 512, io: StorageIO? = nil,
        maximumInFlight: Int = Namespace.defaultMaximumInFlight
    ) throws(ControllerConfigurationError) {
        guard blockSize == 512 || blockSize == 4096 else {
            throw .invalid("LBA size \(blockSize): accepted 512 or 4096")
        }
        guard id != 0, id != broadcastNamespaceID else { throw .invalid("namespace id \(id) is reserved") }
        guard backend.byteCount > 0 else { throw .invalid("namespace size 0: a namespace needs at least one byte") }
        guard maximumInFlight >= 1 else { throw .invalid("in-flight bound \(maximumInFlight): at least 1") }
        if case .threads(let workers) = io, workers < 1 {
            throw .invalid("worker threads \(workers): at least 1")
        }
        self.id = id
        self.backend = backend
        blockSizeShift = blockSize == 512 ? 9 : 12
        #if os(Linux)
        self.io = io ?? (backend is FileBackend ? .ioUring : .inline)
        #else
        self.io = io ?? .inline
        #endif
        self.maximumInFlight = maximumInFlight
    }

    public var blockSize: Int { 1 << Int(blockSizeShift) }
    /// NSZE: size in logical blocks (the backend's bytes rounded up).
    public var blockCount: UInt64 {
        (backend.byteCount + UInt64(blockSize) - 1) >> UInt64(blockSizeShift)
    }

    /// Whether `[lba, lba+count)` lies inside the namespace, without overflow.
    @inline(__always)
    public func contains(lba: UInt64, count: UInt64) -> Bool {
        lba <= blockCount && count <= blockCount - lba
    }

    /// The Identify Namespace structure this namespace answers with.
    public func identify(allocatedBytes: UInt64?) -> IdentifyNamespace {
        var id = IdentifyNamespace()
        id[.nsze] = blockCount
        id[.ncap] = blockCount
        id[.nuse] = allocatedBytes.map { ($0 + UInt64(blockSize) - 1) >> UInt64(blockSizeShift) } ?? blockCount
        id[.nsfeat] = allocatedBytes == nil ? 0 : 1
        id.lbaDataSizeShift = blockSizeShift
        id[.nsattr] = backend.isReadOnly ? 1 : 0
        // DLFEAT bits 2:0: 001b deallocated blocks read as zeroes, 000b not reported;
        // bit 3: Write Zeroes honours DEAC.
        id[.dlfeat] = backend.deallocatedReadsZeroes ? 0b1001 : 0b1000
        // EUI64 52-54-00-00-00-00-00-NN and NGUID 5254…NN: QEMU's OUI and the NSID.
        let nsid = UInt8(truncatingIfNeeded: self.id)
        id[identifier: .eui64] = [0x52, 0x54, 0, 0, 0, 0, 0, nsid]
        id[identifier: .nguid] = [0x52, 0x54] + [UInt8](repeating: 0, count: 13) + [nsid]
        return id
    }

    /// The I/O Command Set Independent Identify Namespace structure (CNS 08h).
    public func identifyIndependent() -> IdentifyNamespaceIndependent {
        var id = IdentifyNamespaceIndependent()
        id.rotationalMedia = backend.isRotational
        id.isWriteProtected = backend.isReadOnly
        return id
    }
}
