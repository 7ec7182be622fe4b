#if os(Linux)
import Glibc
import Synchronization
import SystemPackage

/// A namespace stored in a regular file or a block device.
///
/// I/O goes through `pread(2)`/`pwrite(2)` at absolute offsets on one shared
/// descriptor, so operations from several threads need no lock and never touch the
/// descriptor's file offset (``allocationMap(at:length:)`` moves it with `lseek(2)`,
/// which no other operation depends on).
///
/// Mapping of NVMe commands (NVMe Base Specification 2.0 / NVM Command Set 1.0):
/// - Read / Write: `pread`/`pwrite` loops (short transfers and `EINTR` are retried).
///   A read past the end of a regular file (one shortened behind our back) returns
///   zeroes, as a hole would.
/// - Write with FUA: `pwritev2(RWF_DSYNC)`; where the C library or kernel lacks it,
///   `pwrite` followed by `fdatasync(2)`.
/// - Flush: `fdatasync(2)`. The page cache is the volatile write cache, so
///   ``hasVolatileWriteCache`` is `true` (Identify Controller VWC).
/// - Dataset Management Deallocate and Write Zeroes with DEAC:
///   `fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)`. Where the file system or
///   device refuses (`EOPNOTSUPP`, `ENOSYS`, `ENODEV`, `EINVAL`), zeroes are written
///   instead: the range still reads as zeroes (DLFEAT = 001b) but stays allocated.
/// - Write Zeroes without DEAC: `fallocate(FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE)`,
///   which keeps the blocks allocated; where unsupported (tmpfs), a hole is punched and
///   the range allocated again with `fallocate(FALLOC_FL_KEEP_SIZE)`; where even hole
///   punching is unsupported, zeroes are written from a shared 1 MiB zero buffer.
/// - Allocation map (NBD `base:allocation`): an `lseek(SEEK_DATA/SEEK_HOLE)` walk.
///   Block devices and file systems that do not support it report everything
///   allocated. Granularity is the file system block (``allocationGranularity``).
///   Note that file systems differ in how they report blocks that are allocated but
///   unwritten (after `FALLOC_FL_ZERO_RANGE` or `fallocate`): ext4 reports zeroed
///   ranges as data, tmpfs reports fallocated pages as holes. Both read as zeroes.
///
/// Unsupported `fallocate` modes are remembered per backend, so a file system that
/// refuses one costs one failed system call, not one per command.
///
/// Opening (``init(path:readOnly:createSize:)``):
/// - The path must name a regular file or a block device whose size is a positive
///   multiple of 4096 bytes.
/// - With `createSize` and a missing path, a sparse regular file of that size is
///   created (`O_CREAT | O_EXCL`, mode 0600, `ftruncate(2)`).
/// - With `createSize` and an existing path whose size differs, the open is refused
///   rather than the file silently truncated or extended (data loss, or an export
///   that is not what was asked for): resize the file or drop the size.
public final class FileBackend: BlockBackend {
    /// What the path names.
    public enum FileKind: Sendable, Equatable {
        case regularFile
        case blockDevice
    }

    /// The path given to ``init(path:readOnly:createSize:)``.
    public let path: String
    public let byteCount: UInt64
    public let isReadOnly: Bool
    public let fileKind: FileKind
    /// Whether ``init(path:readOnly:createSize:)`` created the file.
    public let wasCreated: Bool
    /// The unit in which the file system allocates storage and reports holes
    /// (`st_blksize`, 4096 on ext4, xfs and tmpfs).
    public let allocationGranularity: UInt64
    /// `true`: writes land in the page cache (and the device's cache) until
    /// ``flush()``.
    public var hasVolatileWriteCache: Bool { true }

    private let descriptor: OwnedFileDescriptor

    // Capabilities discovered at run time. They start `true` and are cleared, never
    // set again, the first time the kernel says "not supported"; a stale `true` only
    // costs one more failed system call. Internal so that tests can clear them to
    // exercise the fallbacks on file systems that support everything.
    let supportsPunchHole = Atomic<Bool>(true)
    let supportsZeroRange = Atomic<Bool>(true)
    let supportsAllocate = Atomic<Bool>(true)
    let supportsSeekHole = Atomic<Bool>(true)
    let supportsDSyncWrite = Atomic<Bool>(true)

    /// Opens (or creates) the namespace file.
    ///
    /// - Parameters:
    ///   - path: A regular file or a block device.
    ///   - readOnly: Open `O_RDONLY` and refuse every mutating operation with
    ///     ``BackendError/Kind/readOnly``.
    ///   - createSize: If the path does not exist, create a sparse regular file of this
    ///     many bytes (a positive multiple of 4096). If it exists, its size must equal
    ///     this value. `nil`: the path must exist, and its size is the namespace size.
    /// - Throws: ``BackendError/Kind/cannotOpen(path:errno:)`` when the path is missing
    ///   (`ENOENT`), a directory (`EISDIR`), not accessible (`EACCES`, `EROFS`, ...);
    ///   ``BackendError/Kind/invalidConfiguration(_:)`` when it is neither a regular
    ///   file nor a block device, its size is not a positive multiple of 4096, it
    ///   differs from `createSize`, or `createSize` is invalid or asked of a
    ///   read-only namespace.
    public init(path: String, readOnly: Bool = false, createSize: UInt64? = nil) throws(BackendError) {
        if let size = createSize {
            guard size > 0, size % backendBlockSize == 0, size <= UInt64(Int64.max) else {
                throw BackendError(
                    .invalidConfiguration(
                        "requested size \(size) for \(path) is not a positive multiple of 4096 bytes"),
                    operation: "open", length: size)
            }
        }

        // O_NONBLOCK so that a FIFO named by mistake cannot block the open; it is
        // rejected just below and has no effect on regular files or block devices.
        let mode: FileDescriptor.AccessMode = readOnly ? .readOnly : .readWrite
        var created = false
        var fd: FileDescriptor
        do {
            fd = try Self.open(path, mode, options: [.closeOnExec, .nonBlocking])
        } catch let error where error == .noSuchFileOrDirectory && createSize != nil {
            guard !readOnly else {
                throw BackendError(
                    .invalidConfiguration(
                        "\(path) does not exist; refusing to create a file for a read-only namespace"),
                    operation: "open")
            }
            do {
                fd = try Self.open(path, .readWrite, options: [.closeOnExec, .create, .exclusiveCreate],
                                   permissions: [.ownerReadWrite])
                created = true
            } catch let error where error == .fileExists {
                // Created by someone else since our first open: use theirs.
                do {
                    fd = try Self.open(path, mode, options: [.closeOnExec, .nonBlocking])
                } catch {
                    throw BackendError(.cannotOpen(path: path, errno: error.rawValue), operation: "open")
                }
            } catch {
                throw BackendError(.cannotOpen(path: path, errno: error.rawValue), operation: "create")
            }
        } catch {
            throw BackendError(.cannotOpen(path: path, errno: error.rawValue), operation: "open")
        }
        // From here `owned` closes the descriptor on every exit, thrown or not.
        let owned = OwnedFileDescriptor(fd)
        let failCreate = { () -> Void in
            // Only ever removes the empty file this call created with O_EXCL.
            if created { _ = unlink(path) }
        }

        var status = stat()
        guard fstat(fd.rawValue, &status) == 0 else {
            let e = errno
            failCreate()
            throw BackendError(.system(errno: e), operation: "fstat")
        }
        let kind: FileKind
        switch status.st_mode & S_IFMT {
        case S_IFREG: kind = .regularFile
        case S_IFBLK: kind = .blockDevice
        case S_IFDIR:
            throw BackendError(.cannotOpen(path: path, errno: EISDIR), operation: "open")
        default:
            throw BackendError(
                .invalidConfiguration(
                    "\(path) is \(Self.describeType(status.st_mode)); a namespace needs a regular file or a block device"),
                operation: "open")
        }
        // Back to blocking I/O (F_SETFL only changes O_APPEND/O_NONBLOCK/... flags).
        let flags = fcntl(fd.rawValue, F_GETFL)
        guard flags >= 0, fcntl(fd.rawValue, F_SETFL, flags & ~O_NONBLOCK) == 0 else {
            throw BackendError(.system(errno: errno), operation: "fcntl")
        }

        var size: UInt64
        switch kind {
        case .regularFile:
            size = UInt64(status.st_size)
            if created, let requested = createSize {
                // ftruncate extends with a hole: the file costs no storage until written.
                var result: CInt
                repeat { result = ftruncate(fd.rawValue, off_t(requested)) } while result != 0 && errno == EINTR
                guard result == 0 else {
                    let e = errno
                    failCreate()
                    throw BackendError(.system(errno: e), operation: "ftruncate", length: requested)
                }
                size = requested
            }
        case .blockDevice:
            var deviceSize: UInt64 = 0
            // BLKGETSIZE64 writes one UInt64 through its pointer argument. The
            // Glibc overlay's `ioctl(_:_:_: UnsafeMutableRawPointer)` forwards to the
            // variadic C ioctl through a C shim, so the variadic call is made correctly.
            let result = withUnsafeMutableBytes(of: &deviceSize) { bytes in
                ioctl(fd.rawValue, LinuxFileAPI.BLKGETSIZE64, bytes.baseAddress!)
            }
            guard result == 0 else {
                throw BackendError(.system(errno: errno), operation: "ioctl(BLKGETSIZE64)")
            }
            size = deviceSize
        }
        if let requested = createSize, requested != size {
            throw BackendError(
                .invalidConfiguration(
                    "\(path) is \(size) bytes but a size of \(requested) bytes was requested; "
                        + "existing files are never resized: resize it yourself or omit the size"),
                operation: "open", length: requested)
        }
        guard size > 0, size % backendBlockSize == 0 else {
            throw BackendError(
                .invalidConfiguration(
                    "\(path) is \(size) bytes; a namespace size must be a positive multiple of 4096 bytes"),
                operation: "open", length: size)
        }

        self.path = path
        self.byteCount = size
        self.isReadOnly = readOnly
        self.fileKind = kind
        self.wasCreated = created
        self.allocationGranularity = status.st_blksize > 0 ? UInt64(status.st_blksize) : backendBlockSize
        self.descriptor = owned
    }

    private var fd: CInt { descriptor.rawValue }

    // MARK: Read and write

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(BackendError) {
        try checkRange(offset, UInt64(buffer.count), "read")
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        var done = 0
        while done < buffer.count {
            // base + done .. base + buffer.count lies inside `buffer`; the range check
            // above keeps offset + done <= byteCount <= Int64.max.
            let n = pread(fd, base + done, buffer.count - done, off_t(offset + UInt64(done)))
            if n > 0 {
                done += n
            } else if n == 0 {
                // End of file: only possible if the file was shortened after opening.
                // What lies beyond reads as a hole would.
                UnsafeMutableRawBufferPointer(rebasing: buffer[done...]).initializeMemory(as: UInt8.self, repeating: 0)
                return
            } else if errno != EINTR {
                throw BackendError(.system(errno: errno), operation: "read", offset: offset, length: UInt64(buffer.count))
            }
        }
    }

    public func write(at offset: UInt64, from buffer: UnsafeRawBufferPointer, forceUnitAccess: Bool) throws(BackendError) {
        try checkWritable(offset, UInt64(buffer.count), "write")
        guard buffer.count > 0 else { return }
        if forceUnitAccess, supportsDSyncWrite.load(ordering: .relaxed), let pwritev2 = LinuxFileAPI.pwritev2 {
            var done = 0
            while done < buffer.count {
                // The iovec points into `buffer`, which outlives the call; pwritev2
                // only reads through it.
                var vector = iovec(iov_base: UnsafeMutableRawPointer(mutating: buffer.baseAddress! + done),
                                   iov_len: buffer.count - done)
                let n = pwritev2(fd, &vector, 1, off_t(offset + UInt64(done)), LinuxFileAPI.RWF_DSYNC)
                if n > 0 {
                    done += n
                } else if n < 0, errno == EINTR {
                    continue
                } else if n < 0, done == 0, errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL {
                    // Kernel without RWF_DSYNC (before 4.7) or without the system call.
                    supportsDSyncWrite.store(false, ordering: .relaxed)
                    break
                } else {
                    throw BackendError(.system(errno: n == 0 ? EIO : errno), operation: "write",
                                       offset: offset, length: UInt64(buffer.count))
                }
            }
            if done == buffer.count { return }
        }
        try writeAll(buffer, at: offset, operation: "write", requestOffset: offset, requestLength: UInt64(buffer.count))
        if forceUnitAccess {
            try syncData(operation: "write", offset: offset, length: UInt64(buffer.count))
        }
    }

    /// `fdatasync(2)`. Does nothing on a read-only namespace, which has nothing to
    /// make durable.
    public func flush() throws(BackendError) {
        guard !isReadOnly else { return }
        try syncData(operation: "flush", offset: 0, length: 0)
    }

    // MARK: Deallocate and Write Zeroes

    /// Punches a hole; where the file system or device cannot, writes zeroes (the
    /// range then reads as zeroes but stays allocated).
    public func deallocate(at offset: UInt64, length: UInt64) throws(BackendError) {
        try checkWritable(offset, length, "deallocate")
        guard length > 0 else { return }
        try punchHoleOrWriteZeroes(offset: offset, length: length, operation: "deallocate")
    }

    /// With `deallocate`, as ``deallocate(at:length:)``. Without it,
    /// `FALLOC_FL_ZERO_RANGE`, falling back to punching a hole and allocating the range
    /// again, and then to writing zeroes.
    public func writeZeroes(at offset: UInt64, length: UInt64, deallocate: Bool) throws(BackendError) {
        try checkWritable(offset, length, "writeZeroes")
        guard length > 0 else { return }
        if deallocate {
            try punchHoleOrWriteZeroes(offset: offset, length: length, operation: "writeZeroes")
            return
        }
        if supportsZeroRange.load(ordering: .relaxed) {
            switch fallocateRange(LinuxFileAPI.FALLOC_FL_ZERO_RANGE | LinuxFileAPI.FALLOC_FL_KEEP_SIZE,
                                  offset: offset, length: length) {
            case .done: return
            case .unsupported(let permanently):
                if permanently { supportsZeroRange.store(false, ordering: .relaxed) }
            case .failed(let e):
                throw BackendError(.system(errno: e), operation: "writeZeroes", offset: offset, length: length)
            }
        }
        if supportsPunchHole.load(ordering: .relaxed) {
            switch fallocateRange(LinuxFileAPI.FALLOC_FL_PUNCH_HOLE | LinuxFileAPI.FALLOC_FL_KEEP_SIZE,
                                  offset: offset, length: length) {
            case .done:
                // The range reads as zeroes now; allocate it again where the file
                // system can (keeping the "stays allocated" promise of no DEAC).
                guard supportsAllocate.load(ordering: .relaxed) else { return }
                switch fallocateRange(LinuxFileAPI.FALLOC_FL_KEEP_SIZE, offset: offset, length: length) {
                case .done: return
                case .unsupported(let permanently):
                    if permanently { supportsAllocate.store(false, ordering: .relaxed) }
                    return
                case .failed(let e):
                    // ENOSPC and the like: the zeroes are there, the reservation is not.
                    throw BackendError(.system(errno: e), operation: "writeZeroes", offset: offset, length: length)
                }
            case .unsupported(let permanently):
                if permanently { supportsPunchHole.store(false, ordering: .relaxed) }
            case .failed(let e):
                throw BackendError(.system(errno: e), operation: "writeZeroes", offset: offset, length: length)
            }
        }
        try writeZeroBuffers(offset: offset, length: length, operation: "writeZeroes")
    }

    // MARK: Allocation map

    /// Walks `lseek(SEEK_DATA)` / `lseek(SEEK_HOLE)` over the range (lseek(2): `ENXIO`
    /// from `SEEK_DATA` means no data at or after the offset, i.e. a hole up to the
    /// end). Block devices, and file systems answering `EINVAL`/`EOPNOTSUPP`, report
    /// the whole range allocated. The result covers the range exactly, in order,
    /// adjacent extents merged.
    public func allocationMap(at offset: UInt64, length: UInt64) throws(BackendError) -> [AllocationExtent] {
        try checkRange(offset, length, "allocationMap")
        guard length > 0 else { return [] }
        let end = offset + length
        let allAllocated = [AllocationExtent(offset: offset, length: length, isAllocated: true)]
        guard fileKind == .regularFile, supportsSeekHole.load(ordering: .relaxed) else { return allAllocated }

        var extents: [AllocationExtent] = []
        var position = offset
        while position < end {
            // Offsets are <= byteCount <= Int64.max, so the conversions cannot trap.
            let dataStart = lseek(fd, off_t(position), LinuxFileAPI.SEEK_DATA)
            if dataStart < 0 {
                switch errno {
                case ENXIO:
                    extents.appendMerged(start: position, end: end, isAllocated: false)
                    return extents
                case EINVAL, EOPNOTSUPP:
                    supportsSeekHole.store(false, ordering: .relaxed)
                    return allAllocated
                case let e:
                    throw BackendError(.system(errno: e), operation: "allocationMap", offset: offset, length: length)
                }
            }
            let data = max(UInt64(dataStart), position)
            extents.appendMerged(start: position, end: min(data, end), isAllocated: false)
            if data >= end { break }
            let holeStart = lseek(fd, off_t(data), LinuxFileAPI.SEEK_HOLE)
            var hole: UInt64
            if holeStart < 0 {
                guard errno == ENXIO else {
                    throw BackendError(.system(errno: errno), operation: "allocationMap", offset: offset, length: length)
                }
                // The file was shortened between the two calls: the rest is beyond EOF.
                extents.appendMerged(start: data, end: end, isAllocated: false)
                return extents
            }
            hole = UInt64(holeStart)
            if hole <= data {
                // A concurrent hole punch between the two calls; report one granule as
                // data so that the walk always moves forward.
                hole = data + allocationGranularity
            }
            extents.appendMerged(start: data, end: min(hole, end), isAllocated: true)
            position = hole
        }
        return extents
    }

    // MARK: Helpers

    private enum FallocateOutcome {
        case done
        /// The mode is not supported: permanently (`EOPNOTSUPP`, `ENOSYS`, `ENODEV`, or
        /// no `fallocate` in the C library) or for this request only (`EINVAL`, e.g. a
        /// block device and a range not aligned to its logical block size).
        case unsupported(permanently: Bool)
        case failed(Int32)
    }

    private func fallocateRange(_ mode: CInt, offset: UInt64, length: UInt64) -> FallocateOutcome {
        guard let fallocate = LinuxFileAPI.fallocate else { return .unsupported(permanently: true) }
        while true {
            // The caller range-checked [offset, offset+length) against byteCount <= Int64.max.
            if fallocate(fd, mode, off_t(offset), off_t(length)) == 0 { return .done }
            switch errno {
            case EINTR: continue
            case EOPNOTSUPP, ENOSYS, ENODEV: return .unsupported(permanently: true)
            case EINVAL: return .unsupported(permanently: false)
            case let e: return .failed(e)
            }
        }
    }

    private func punchHoleOrWriteZeroes(offset: UInt64, length: UInt64, operation: String) throws(BackendError) {
        if supportsPunchHole.load(ordering: .relaxed) {
            switch fallocateRange(LinuxFileAPI.FALLOC_FL_PUNCH_HOLE | LinuxFileAPI.FALLOC_FL_KEEP_SIZE,
                                  offset: offset, length: length) {
            case .done: return
            case .unsupported(let permanently):
                if permanently { supportsPunchHole.store(false, ordering: .relaxed) }
            case .failed(let e):
                throw BackendError(.system(errno: e), operation: operation, offset: offset, length: length)
            }
        }
        try writeZeroBuffers(offset: offset, length: length, operation: operation)
    }

    /// Writes zeroes over the range, at most ``ZeroBuffer/count`` bytes per call.
    private func writeZeroBuffers(offset: UInt64, length: UInt64, operation: String) throws(BackendError) {
        var position = offset
        let end = offset + length
        while position < end {
            let n = Int(min(UInt64(ZeroBuffer.count), end - position))
            try writeAll(UnsafeRawBufferPointer(rebasing: ZeroBuffer.bytes[..<n]), at: position,
                         operation: operation, requestOffset: offset, requestLength: length)
            position += UInt64(n)
        }
    }

    /// `pwrite` until all of `buffer` is written; errors name the whole request.
    private func writeAll(_ buffer: UnsafeRawBufferPointer, at offset: UInt64, operation: String,
                          requestOffset: UInt64, requestLength: UInt64) throws(BackendError) {
        guard let base = buffer.baseAddress else { return }
        var done = 0
        while done < buffer.count {
            // base + done .. base + buffer.count lies inside `buffer`; offsets were
            // range-checked against byteCount <= Int64.max.
            let n = pwrite(fd, base + done, buffer.count - done, off_t(offset + UInt64(done)))
            if n > 0 {
                done += n
            } else if n < 0, errno == EINTR {
                continue
            } else {
                // pwrite returning 0 for a non-empty buffer would loop forever: report EIO.
                throw BackendError(.system(errno: n == 0 ? EIO : errno), operation: operation,
                                   offset: requestOffset, length: requestLength)
            }
        }
    }

    private func syncData(operation: String, offset: UInt64, length: UInt64) throws(BackendError) {
        while fdatasync(fd) != 0 {
            guard errno == EINTR else {
                throw BackendError(.system(errno: errno), operation: operation, offset: offset, length: length)
            }
        }
    }

    private static func open(_ path: String, _ mode: FileDescriptor.AccessMode,
                             options: FileDescriptor.OpenOptions,
                             permissions: FilePermissions? = nil) throws(Errno) -> FileDescriptor {
        do {
            return try FileDescriptor.open(FilePath(path), mode, options: options, permissions: permissions)
        } catch let error as Errno {
            throw error
        } catch {
            // FileDescriptor.open throws only Errno.
            throw Errno.ioError
        }
    }

    private static func describeType(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFCHR: "a character device"
        case S_IFIFO: "a FIFO"
        case S_IFSOCK: "a socket"
        case S_IFLNK: "a symbolic link"
        default: "of unknown type (st_mode \(String(mode, radix: 8)))"
        }
    }
}

/// The one owner of an open file descriptor: closes it exactly once, when the owner
/// is destroyed. Non-copyable, so the descriptor cannot be closed twice or used after
/// close by a copy outliving it.
struct OwnedFileDescriptor: ~Copyable, Sendable {
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

/// 1 MiB of zeroes shared by every ``FileBackend`` that has to write zeroes.
enum ZeroBuffer {
    static let count = 1 << 20

    private struct Storage: @unchecked Sendable {
        // Allocated once, zero-filled, never written and never freed: immutable shared
        // memory, hence safe to read from any thread.
        let bytes: UnsafeRawBufferPointer
    }

    private static let storage: Storage = {
        // calloc returns zeroed memory; a failure this early (1 MiB) is fatal.
        guard let raw = calloc(1, count) else { fatalError("cannot allocate the 1 MiB zero buffer") }
        return Storage(bytes: UnsafeRawBufferPointer(start: raw, count: count))
    }()

    static var bytes: UnsafeRawBufferPointer { storage.bytes }
}
#endif
