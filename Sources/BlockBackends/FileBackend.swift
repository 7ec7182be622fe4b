#if os(Linux)
import CLinuxIO
import Glibc
import Synchronization
import SystemPackage

/// A namespace stored in a regular file or a block device.
///
/// I/O goes through positioned reads and writes (swift-system's
/// `FileDescriptor` at absolute offsets, `preadv`/`pwritev2` for vectors) on
/// shared descriptors, so operations from several threads need no lock; the
/// asynchronous engines (``IOURingEngine``, ``ThreadPoolEngine``) use the same
/// descriptors and routing.
///
/// Mapping of NVMe commands (NVMe Base Specification 2.0 / NVM Command Set 1.0):
/// - Read / Write: positioned transfers, short ones continued. A read past the end
///   of a regular file (one shortened behind our back) returns zeroes, as a hole
///   would.
/// - Write with FUA: `pwritev2(RWF_DSYNC)`; where the kernel lacks it, the write
///   followed by `fdatasync(2)`.
/// - Flush: `fdatasync(2)`. The page cache (and the device's cache) is the volatile
///   write cache, so ``hasVolatileWriteCache`` is `true` (Identify Controller VWC).
/// - Regular files: Deallocate and Write Zeroes with DEAC punch a hole
///   (`FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`); Write Zeroes without DEAC uses
///   `FALLOC_FL_ZERO_RANGE`, else punches and allocates again; where the file system
///   refuses, zeroes are written from a shared 1 MiB buffer.
/// - Block devices: Deallocate is `BLKDISCARD` (advisory: a discarded range reads
///   back as whatever the device says, so ``deallocatedReadsZeroes`` is `false`);
///   Write Zeroes with DEAC is `fallocate(PUNCH_HOLE)` (the kernel's zero-out with
///   unmap, never a fallback), then `BLKZEROOUT`; without DEAC `BLKZEROOUT`.
/// - ``writeZeroesQuickly(at:length:deallocate:)`` (NBD FAST_ZERO) refuses with
///   ``BackendError/Kind/zeroingNotFast`` wherever the only way left is writing
///   zeroes: the zero-buffer fallback for files, a block device without hardware
///   Write Zeroes (`queue/write_zeroes_max_bytes` = 0).
/// - Allocation map (NBD `base:allocation`): an `lseek(SEEK_DATA/SEEK_HOLE)` walk.
///   Block devices and file systems that do not support it report everything
///   allocated. Granularity is the file system block (``allocationGranularity``).
///
/// Caching (``Caching``): `writeback` goes through the page cache; `none` opens a
/// second descriptor with `O_DIRECT` and moves aligned transfers straight between
/// the caller's memory and the device. A transfer whose memory is not aligned as
/// direct I/O needs is bounced through aligned memory; one whose offset or length
/// is not aligned (an LBA smaller than the device's, the last partial block of an
/// image) goes through the buffered descriptor — never refused. Linux keeps the
/// two coherent (a direct read first writes back cached pages of its range, a
/// direct write invalidates them).
///
/// Unsupported `fallocate` modes are remembered per backend, so a file system that
/// refuses one costs one failed system call, not one per command.
///
/// Opening (``init(path:readOnly:createSize:caching:)``):
/// - The path must name a regular file or a block device of a positive size; any
///   size is served (the namespace rounds it up to its LBA size and the controller
///   clips requests at the end).
/// - With `createSize` and a missing path, a sparse regular file of that size (a
///   positive multiple of 512) is created (`O_CREAT | O_EXCL`, mode 0600, `ftruncate`).
/// - With `createSize` and an existing path whose size differs, the open is refused
///   rather than the file silently truncated or extended (data loss, or an export
///   that is not what was asked for): resize the file or drop the size.
public final class FileBackend: BlockBackend {
    /// What the path names.
    public enum FileKind: Sendable, Equatable {
        case regularFile
        case blockDevice
    }

    /// The page cache policy (`cache=`).
    public typealias Caching = FileCaching

    /// What `O_DIRECT` transfers need (statx `STATX_DIOALIGN`).
    public struct DirectIOAlignment: Sendable, Equatable {
        /// Alignment of memory addresses and segment lengths.
        public var memory: Int
        /// Alignment of file offsets and transfer lengths.
        public var offset: Int
    }

    /// The path given to ``init(path:readOnly:createSize:caching:)``.
    public let path: String
    public let byteCount: UInt64
    public let isReadOnly: Bool
    public let fileKind: FileKind
    public let caching: Caching
    /// Whether ``init(path:readOnly:createSize:caching:)`` created the file.
    public let wasCreated: Bool
    /// The unit in which the file system allocates storage and reports holes
    /// (`st_blksize`, 4096 on ext4, xfs and tmpfs).
    public let allocationGranularity: UInt64
    /// Block devices: `BLKROTATIONAL`. Regular files: `false`.
    public let isRotational: Bool
    /// Block devices: the logical block size (`BLKSSZGET`); with `cache=none`, at
    /// least the offset alignment direct I/O needs; otherwise `nil`.
    public let preferredBlockSize: Int?
    /// With `cache=none`, what direct transfers need; `nil` otherwise.
    public let directIOAlignment: DirectIOAlignment?
    /// Block devices: whether the device zeroes in hardware
    /// (`queue/write_zeroes_max_bytes` > 0), so `BLKZEROOUT` never writes buffers.
    public let zeroesInHardware: Bool
    /// `true`: writes land in the page cache (and the device's cache) until
    /// ``flush()``.
    public var hasVolatileWriteCache: Bool { true }
    public var deallocatedReadsZeroes: Bool { fileKind == .regularFile }

    /// Through the page cache (always open: flushes, misaligned direct transfers).
    let buffered: OwnedFileDescriptor
    /// `O_DIRECT` (only with `cache=none`).
    let direct: OwnedFileDescriptor?

    // Capabilities discovered at run time. They start `true` and are cleared, never
    // set again, the first time the kernel says "not supported"; a stale `true` only
    // costs one more failed system call. Internal so that tests can clear them to
    // exercise the fallbacks on file systems that support everything.
    let supportsPunchHole = Atomic<Bool>(true)
    let supportsZeroRange = Atomic<Bool>(true)
    let supportsAllocate = Atomic<Bool>(true)
    let supportsSeekHole = Atomic<Bool>(true)
    let supportsDSyncWrite = Atomic<Bool>(true)

    /// With `cache=none`: transfers that went straight to the device, through
    /// bounce memory, and through the page cache (see ``TransferRoute``).
    public let directTransfers = Atomic<UInt64>(0)
    public let bouncedTransfers = Atomic<UInt64>(0)
    public let bufferedTransfers = Atomic<UInt64>(0)

    /// Opens (or creates) the namespace file.
    ///
    /// - Parameters:
    ///   - path: A regular file or a block device.
    ///   - readOnly: Open `O_RDONLY` and refuse every mutating operation with
    ///     ``BackendError/Kind/readOnly``.
    ///   - createSize: If the path does not exist, create a sparse regular file of this
    ///     many bytes (a positive multiple of 512). If it exists, its size must equal
    ///     this value. `nil`: the path must exist, and its size is the namespace size.
    ///   - caching: ``Caching/writeback`` (default) or ``Caching/none`` (`O_DIRECT`).
    /// - Throws: ``BackendError/Kind/cannotOpen(path:errno:)`` when the path is missing
    ///   (`ENOENT`), a directory (`EISDIR`), not accessible (`EACCES`, `EROFS`, ...), or
    ///   refuses `O_DIRECT` (`EINVAL`, tmpfs); ``BackendError/Kind/invalidConfiguration(_:)``
    ///   when it is neither a regular file nor a block device, it is empty, it differs
    ///   from `createSize`, or `createSize` is invalid or asked of a read-only namespace.
    public init(
        path: String, readOnly: Bool = false, createSize: UInt64? = nil,
        caching: Caching = .writeback
    ) throws(BackendError) {
        if let size = createSize {
            guard size > 0, size % 512 == 0, size <= UInt64(Int64.max) else {
                throw BackendError(
                    .invalidConfiguration(
                        "requested size \(size) for \(path) is not a positive multiple of 512 bytes"),
                    operation: "open", length: size)
            }
        }
        let (fd, created) = try Self.openOrCreate(path, readOnly: readOnly, createSize: createSize)
        // From here `owned` closes the descriptor on every exit, thrown or not.
        let owned = OwnedFileDescriptor(fd)
        let failCreate = { () -> Void in
            // Only ever removes the empty file this call created with O_EXCL.
            if created { _ = unlink(path) }
        }

        let status: Stat
        do {
            status = try fd.stat()
        } catch {
            failCreate()
            throw BackendError(.system(errno: error.rawValue), operation: "fstat")
        }
        let kind: FileKind
        switch status.type {
        case .regular: kind = .regularFile
        case .blockSpecial: kind = .blockDevice
        case .directory:
            throw BackendError(.cannotOpen(path: path, errno: EISDIR), operation: "open")
        default:
            throw BackendError(
                .invalidConfiguration(
                    "\(path) is \(Self.describe(status.type)); a namespace needs a regular file or a block device"),
                operation: "open")
        }
        // Back to blocking I/O (F_SETFL only changes O_APPEND/O_NONBLOCK/... flags).
        let flags = fcntl(fd.rawValue, F_GETFL)
        guard flags >= 0, fcntl(fd.rawValue, F_SETFL, flags & ~O_NONBLOCK) == 0 else {
            throw BackendError(.system(errno: errno), operation: "fcntl")
        }

        var size: UInt64
        var rotational = false
        var logicalBlockSize: Int? = nil
        var hardwareZeroing = false
        switch kind {
        case .regularFile:
            size = UInt64(status.size)
            if created, let requested = createSize {
                // ftruncate extends with a hole: the file costs no storage until written.
                do {
                    try fd.resize(to: Int64(requested))
                } catch {
                    failCreate()
                    throw BackendError(
                        .system(errno: (error as? Errno)?.rawValue ?? EIO), operation: "ftruncate",
                        length: requested)
                }
                size = requested
            }
        case .blockDevice:
            let device = try BlockDeviceInfo(fd.rawValue, deviceID: UInt64(status.specialDeviceID.rawValue))
            size = device.byteCount
            rotational = device.isRotational
            logicalBlockSize = device.logicalBlockSize
            hardwareZeroing = device.zeroesInHardware
        }
        if let requested = createSize, requested != size {
            throw BackendError(
                .invalidConfiguration(
                    "\(path) is \(size) bytes but a size of \(requested) bytes was requested; "
                        + "existing files are never resized: resize it yourself or omit the size"),
                operation: "open", length: requested)
        }
        guard size > 0 else {
            throw BackendError(
                .invalidConfiguration("\(path) is empty; a namespace needs at least one byte"),
                operation: "open")
        }

        var directDescriptor: OwnedFileDescriptor? = nil
        var alignment: DirectIOAlignment? = nil
        if caching == .none {
            let d: FileDescriptor
            do {
                d = try Self.open(
                    path, readOnly ? .readOnly : .readWrite,
                    options: [.closeOnExec, FileDescriptor.OpenOptions(rawValue: clinux_O_DIRECT)])
            } catch {
                throw BackendError(
                    .cannotOpen(path: path, errno: error.rawValue), operation: "open with O_DIRECT (cache=none)")
            }
            directDescriptor = OwnedFileDescriptor(d)
            alignment = Self.directIOAlignment(d.rawValue, logicalBlockSize: logicalBlockSize)
        }

        self.path = path
        self.byteCount = size
        self.isReadOnly = readOnly
        self.fileKind = kind
        self.caching = caching
        self.wasCreated = created
        self.allocationGranularity = status.preferredIOBlockSize > 0 ? UInt64(status.preferredIOBlockSize) : 4096
        self.isRotational = rotational
        self.zeroesInHardware = hardwareZeroing
        self.directIOAlignment = alignment
        let preferred = max(logicalBlockSize ?? 0, alignment.map { min($0.offset, 4096) } ?? 0)
        self.preferredBlockSize = preferred > 0 ? preferred : nil
        self.buffered = owned
        self.direct = directDescriptor
    }

    // MARK: Opening

    /// Opens `path` (creating it with `createSize` when missing); returns the
    /// descriptor and whether it was created.
    private static func openOrCreate(
        _ path: String, readOnly: Bool,
        createSize: UInt64?
    ) throws(BackendError) -> (FileDescriptor, Bool) {
        // O_NONBLOCK so that a FIFO named by mistake cannot block the open; it is
        // rejected after the open and has no effect on regular files or block devices.
        let mode: FileDescriptor.AccessMode = readOnly ? .readOnly : .readWrite
        do {
            return (try open(path, mode, options: [.closeOnExec, .nonBlocking]), false)
        } catch let error where error == .noSuchFileOrDirectory && createSize != nil {
            guard !readOnly else {
                throw BackendError(
                    .invalidConfiguration(
                        "\(path) does not exist; refusing to create a file for a read-only namespace"),
                    operation: "open")
            }
            do {
                return (
                    try open(
                        path, .readWrite, options: [.closeOnExec, .create, .exclusiveCreate],
                        permissions: [.ownerReadWrite]), true
                )
            } catch let error where error == .fileExists {
                // Created by someone else since our first open: use theirs.
                do {
                    return (try open(path, mode, options: [.closeOnExec, .nonBlocking]), false)
                } catch {
                    throw BackendError(.cannotOpen(path: path, errno: error.rawValue), operation: "open")
                }
            } catch {
                throw BackendError(.cannotOpen(path: path, errno: error.rawValue), operation: "create")
            }
        } catch {
            throw BackendError(.cannotOpen(path: path, errno: error.rawValue), operation: "open")
        }
    }

    private static func open(
        _ path: String, _ mode: FileDescriptor.AccessMode,
        options: FileDescriptor.OpenOptions,
        permissions: FilePermissions? = nil
    ) throws(Errno) -> FileDescriptor {
        do {
            return try FileDescriptor.open(FilePath(path), mode, options: options, permissions: permissions)
        } catch let error as Errno {
            throw error
        } catch {
            // FileDescriptor.open throws only Errno.
            throw Errno.ioError
        }
    }

    /// statx `STATX_DIOALIGN`; without it (older kernels, some file systems) the
    /// logical block size of a block device, else 4096 for both, which every
    /// device accepts.
    private static func directIOAlignment(_ fd: CInt, logicalBlockSize: Int?) -> DirectIOAlignment {
        var memory: UInt32 = 0
        var offset: UInt32 = 0
        if clinux_direct_io_alignment(fd, &memory, &offset) == 0, memory > 0, offset > 0,
            memory.nonzeroBitCount == 1, offset.nonzeroBitCount == 1
        {
            return DirectIOAlignment(memory: Int(memory), offset: Int(offset))
        }
        let fallback = logicalBlockSize ?? 4096
        return DirectIOAlignment(memory: fallback, offset: fallback)
    }

    private static func describe(_ type: FileType) -> String {
        switch type {
        case .characterSpecial: "a character device"
        case .fifo: "a FIFO"
        case .socket: "a socket"
        case .symbolicLink: "a symbolic link"
        default: "of unknown type (st_mode \(String(type.rawValue, radix: 8)))"
        }
    }
}

/// What the kernel says about a block device.
struct BlockDeviceInfo {
    var byteCount: UInt64
    var logicalBlockSize: Int
    var isRotational: Bool
    var zeroesInHardware: Bool

    init(_ fd: CInt, deviceID: UInt64) throws(BackendError) {
        var bytes: UInt64 = 0
        var result = clinux_block_size_bytes(fd, &bytes)
        guard result == 0 else { throw BackendError(.system(errno: -result), operation: "ioctl(BLKGETSIZE64)") }
        var logical: UInt32 = 0
        result = clinux_block_logical_size(fd, &logical)
        guard result == 0 else { throw BackendError(.system(errno: -result), operation: "ioctl(BLKSSZGET)") }
        var rotational: UInt32 = 0
        // Not every driver answers BLKROTATIONAL; a silent one counts as solid state.
        _ = clinux_block_rotational(fd, &rotational)
        byteCount = bytes
        logicalBlockSize = Int(logical)
        isRotational = rotational != 0
        let major = clinux_device_major(deviceID), minor = clinux_device_minor(deviceID)
        zeroesInHardware = (Self.queueAttribute("write_zeroes_max_bytes", major: major, minor: minor) ?? 0) > 0
    }

    /// `/sys/dev/block/M:m/queue/NAME` (a partition's queue is its disk's).
    static func queueAttribute(_ name: String, major: UInt32, minor: UInt32) -> UInt64? {
        for directory in ["queue", "../queue"] {
            let path = "/sys/dev/block/\(major):\(minor)/\(directory)/\(name)"
            guard let fd = try? FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec]) else {
                continue
            }
            defer { try? fd.close() }
            var bytes = [UInt8](repeating: 0, count: 64)
            let n = (try? bytes.withUnsafeMutableBytes { try fd.read(into: $0) }) ?? 0
            let text = String(decoding: bytes[0..<n], as: UTF8.self).trimmingCharacters(in: " \n")
            if let value = UInt64(text) { return value }
        }
        return nil
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s = s.dropFirst() }
        while let c = s.last, set.contains(c) { s = s.dropLast() }
        return String(s)
    }
}

/// The one owner of an open file descriptor: closes it exactly once, when the
/// last reference goes. The descriptor is never closed by anyone else.
final class OwnedFileDescriptor: Sendable {
    let rawValue: CInt

    init(_ descriptor: FileDescriptor) {
        rawValue = descriptor.rawValue
    }

    deinit {
        // Errors from close(2) are not actionable here: data durability is what
        // flush() (fdatasync) reports, and Linux releases the descriptor even when
        // close fails, so it must not be retried.
        _ = Glibc.close(rawValue)
    }
}
#endif
