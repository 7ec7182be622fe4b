/// The storage behind one NVMe namespace (NVMe Base Specification 2.0, §3.2.1
/// "Namespaces"): a flat byte range that the emulated controller reads and writes
/// at LBA-aligned offsets.
///
/// The size may be any positive number of bytes: the namespace covers it rounded
/// up to the LBA size, and the controller clips every request at ``byteCount``
/// (reads of the padding return zeroes, writes to it are dropped), so a backend
/// only ever sees ranges inside `[0, byteCount)`.
///
/// Implementations are thread-safe: the controller thread or the workers of a
/// namespace's ``StorageEngine`` call them, and tests and tools may call them from
/// several threads at once. Every offset and length handed in has already been
/// range-checked by the controller; implementations still check and throw
/// ``BackendError/Kind/outOfRange`` rather than trap.
public protocol BlockBackend: AnyObject, Sendable {
    /// Size of the storage in bytes (any positive value).
    var byteCount: UInt64 { get }
    /// Whether writes are refused (NVMe "Namespace is Write Protected").
    var isReadOnly: Bool { get }
    /// Whether the backend has a volatile write cache that ``flush()`` makes durable
    /// (reported in Identify Controller VWC).
    var hasVolatileWriteCache: Bool { get }
    /// Whether the storage is a spinning disk (NBD_FLAG_ROTATIONAL; NVMe I/O Command
    /// Set Independent Identify Namespace NSFEAT bit 4, Rotational Media).
    var isRotational: Bool { get }
    /// The LBA size the storage works best with (a block device's logical block
    /// size, the alignment direct I/O needs), or `nil` when any is fine.
    var preferredBlockSize: Int? { get }
    /// Whether a deallocated range reads back as zeroes (NVM Command Set DLFEAT
    /// bits 2:0 = 001b). A block device's discard promises nothing.
    var deallocatedReadsZeroes: Bool { get }

    /// Reads `buffer.count` bytes at `offset`. Unallocated ranges read as zeroes
    /// (DLFEAT = 001b).
    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(BackendError)
    /// Writes `buffer` at `offset`. With `forceUnitAccess` the data is durable when
    /// this returns (NVMe Write FUA bit).
    func write(at offset: UInt64, from buffer: UnsafeRawBufferPointer, forceUnitAccess: Bool) throws(BackendError)
    /// Reads `vector.byteCount` bytes at `offset` into the segments, in order (a
    /// transfer over a PRP list). The default reads segment by segment.
    func read(at offset: UInt64, into vector: IOVector) throws(BackendError)
    /// Writes the segments, in order, at `offset`. The default writes segment by
    /// segment.
    func write(at offset: UInt64, from vector: IOVector, forceUnitAccess: Bool) throws(BackendError)
    /// Makes every completed write durable (NVMe Flush).
    func flush() throws(BackendError)
    /// Deallocates the range; it reads as zeroes afterwards when
    /// ``deallocatedReadsZeroes`` says so (Dataset Management, attribute Deallocate).
    func deallocate(at offset: UInt64, length: UInt64) throws(BackendError)
    /// Makes the range read as zeroes (NVMe Write Zeroes). With `deallocate` the
    /// backend may free the storage (Write Zeroes DEAC bit); without it the range
    /// stays allocated where the backend can say so.
    func writeZeroes(at offset: UInt64, length: UInt64, deallocate: Bool) throws(BackendError)
    /// As ``writeZeroes(at:length:deallocate:)``, but only if the backend can do it
    /// without writing buffers of zeroes; otherwise throws
    /// ``BackendError/Kind/zeroingNotFast`` at once and changes nothing (NBD
    /// `NBD_CMD_FLAG_FAST_ZERO`). The default assumes zeroing is always fast.
    func writeZeroesQuickly(at offset: UInt64, length: UInt64, deallocate: Bool) throws(BackendError)
    /// The allocation state of `[offset, offset+length)`, as consecutive extents
    /// that cover the range exactly, in order, adjacent extents of equal state merged.
    func allocationMap(at offset: UInt64, length: UInt64) throws(BackendError) -> [AllocationExtent]
}

extension BlockBackend {
    public var isRotational: Bool { false }
    public var preferredBlockSize: Int? { nil }
    public var deallocatedReadsZeroes: Bool { true }

    public func read(at offset: UInt64, into vector: IOVector) throws(BackendError) {
        var position = offset
        for segment in vector {
            try read(at: position, into: segment.mutableBytes)
            position += UInt64(segment.count)
        }
    }

    public func write(at offset: UInt64, from vector: IOVector, forceUnitAccess: Bool) throws(BackendError) {
        var position = offset
        for segment in vector {
            try write(
                at: position, from: UnsafeRawBufferPointer(segment.mutableBytes), forceUnitAccess: forceUnitAccess)
            position += UInt64(segment.count)
        }
    }

    public func writeZeroesQuickly(at offset: UInt64, length: UInt64, deallocate: Bool) throws(BackendError) {
        try writeZeroes(at: offset, length: length, deallocate: deallocate)
    }
}

/// One run of bytes with the same allocation state.
public struct AllocationExtent: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// The bytes, `[offset, offset + length)`.
    public var range: Range<UInt64>
    /// `false`: a hole; it reads as zeroes.
    public var isAllocated: Bool

    public init(offset: UInt64, length: UInt64, isAllocated: Bool) {
        self.range = offset..<(offset + length)
        self.isAllocated = isAllocated
    }

    public var offset: UInt64 { range.lowerBound }
    public var length: UInt64 { range.upperBound - range.lowerBound }

    public var description: String {
        "\(isAllocated ? "data" : "hole")[\(range)]"
    }
}

/// What went wrong in a backend, and where.
public struct BackendError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        /// An `errno` from the operating system (EIO, ENOSPC, ...).
        case system(errno: Int32)
        /// The range lies outside the namespace.
        case outOfRange
        /// A write to a read-only backend.
        case readOnly
        /// The path does not exist, is not a regular file or block device, or
        /// cannot be opened.
        case cannotOpen(path: String, errno: Int32)
        /// A size or LBA format the backend cannot provide.
        case invalidConfiguration(String)
        /// Zeroing the range would mean writing zeroes (see
        /// ``BlockBackend/writeZeroesQuickly(at:length:deallocate:)``).
        case zeroingNotFast
    }

    public var kind: Kind
    /// The operation that failed ("read", "write", "flush", "open", ...).
    public var operation: String
    public var offset: UInt64
    public var length: UInt64

    public init(_ kind: Kind, operation: String, offset: UInt64 = 0, length: UInt64 = 0) {
        self.kind = kind
        self.operation = operation
        self.offset = offset
        self.length = length
    }

    /// "operation at offset O length L: what went wrong". Errors from opening a
    /// backend (``Kind/cannotOpen(path:errno:)``, ``Kind/invalidConfiguration(_:)``)
    /// have no meaningful offset and say instead what the path was and what a
    /// namespace accepts.
    public var description: String {
        let what: String
        switch kind {
        case .system(let e): what = "\(String(cString: strerror(e))) (errno \(e))"
        case .outOfRange: what = "range outside the namespace"
        case .readOnly: what = "backend is read-only"
        case .zeroingNotFast: what = "zeroing would write zeroes (not fast)"
        case .cannotOpen(let path, let e):
            return "cannot \(operation) \(path): \(String(cString: strerror(e))) (errno \(e))\(Self.openHint(e))"
        case .invalidConfiguration(let s): return "\(operation): \(s)"
        }
        return "\(operation) at offset \(offset) length \(length): \(what)"
    }

    /// What an `open` errno means for a namespace path, and what is accepted instead.
    private static func openHint(_ e: Int32) -> String {
        switch e {
        case ENOENT:
            "; the path does not exist (a size creates a missing file, but only in an existing directory)"
        case EISDIR:
            "; it is a directory, but a namespace needs a regular file or a block device"
        case ENOTDIR:
            "; a component of the path is not a directory"
        case EACCES, EPERM:
            "; permission denied (a writable namespace needs read and write access; "
                + "a read-only one needs read access)"
        case EROFS:
            "; the file system is read-only (export the namespace read-only)"
        default:
            "; a namespace needs an accessible regular file or block device"
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
