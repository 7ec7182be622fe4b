#if os(Linux)
import CLinuxIO
import Glibc
import Synchronization
import SystemPackage

/// Reads, writes and Flush of a ``FileBackend``, and the direct-I/O routing the
/// asynchronous engines share.
extension FileBackend {
    /// How one transfer reaches the file.
    enum TransferRoute: Equatable {
        /// The page cache (`cache=writeback`, or a transfer `O_DIRECT` cannot take).
        case buffered
        /// `O_DIRECT` straight from and to the caller's memory.
        case direct
        /// `O_DIRECT` through aligned memory (the caller's is not aligned enough).
        case bounce
    }

    /// The route for `length` bytes at `offset` whose memory is `vector`.
    func route(offset: UInt64, length: Int, vector: IOVector) -> TransferRoute {
        guard let a = directIOAlignment else { return .buffered }
        guard offset % UInt64(a.offset) == 0, length % a.offset == 0, length > 0 else {
            bufferedTransfers.add(1, ordering: .relaxed)
            return .buffered
        }
        if vector.isAligned(to: a.memory) {
            directTransfers.add(1, ordering: .relaxed)
            return .direct
        }
        bouncedTransfers.add(1, ordering: .relaxed)
        return .bounce
    }

    /// The descriptor a route uses.
    func descriptor(for route: TransferRoute) -> CInt {
        route == .buffered ? buffered.rawValue : direct!.rawValue
    }

    /// Alignment of bounce memory: what direct I/O needs, at least a page.
    var bounceAlignment: Int { max(directIOAlignment?.memory ?? 4096, 4096) }

    // MARK: BlockBackend

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(BackendError) {
        guard let base = buffer.baseAddress, buffer.count > 0 else {
            return try checkRange(offset, 0, "read")
        }
        try read(at: offset, into: IOVector(IOSegment(base: base, count: buffer.count)))
    }

    public func write(at offset: UInt64, from buffer: UnsafeRawBufferPointer, forceUnitAccess: Bool)
        throws(BackendError)
    {
        guard let base = buffer.baseAddress, buffer.count > 0 else {
            return try checkWritable(offset, 0, "write")
        }
        // The segment is only read from (pwrite); the mutable pointer is the carrier type.
        try write(
            at: offset, from: IOVector(IOSegment(base: UnsafeMutableRawPointer(mutating: base), count: buffer.count)),
            forceUnitAccess: forceUnitAccess)
    }

    public func read(at offset: UInt64, into vector: IOVector) throws(BackendError) {
        try checkRange(offset, UInt64(vector.byteCount), "read")
        guard vector.byteCount > 0 else { return }
        let route = route(offset: offset, length: vector.byteCount, vector: vector)
        if route == .bounce {
            let bounce = try AlignedBuffer(count: vector.byteCount, alignment: bounceAlignment, operation: "read")
            try readAll(descriptor(for: route), IOVector(bounce.segment), at: offset)
            vector.copy(from: bounce.base)
        } else {
            try readAll(descriptor(for: route), vector, at: offset)
        }
    }

    public func write(at offset: UInt64, from vector: IOVector, forceUnitAccess: Bool) throws(BackendError) {
        try checkWritable(offset, UInt64(vector.byteCount), "write")
        guard vector.byteCount > 0 else { return }
        let route = route(offset: offset, length: vector.byteCount, vector: vector)
        var source = vector
        var bounce: AlignedBuffer? = nil
        if route == .bounce {
            let b = try AlignedBuffer(count: vector.byteCount, alignment: bounceAlignment, operation: "write")
            vector.copy(to: b.base)
            source = IOVector(b.segment)
            bounce = b
        }
        try writeAll(descriptor(for: route), source, at: offset, forceUnitAccess: forceUnitAccess)
        withExtendedLifetime(bounce) {}
    }

    /// `fdatasync(2)`. Does nothing on a read-only namespace, which has nothing to
    /// make durable.
    public func flush() throws(BackendError) {
        guard !isReadOnly else { return }
        try syncData(operation: "flush", offset: 0, length: 0)
    }

    // MARK: Transfers

    /// Reads all of `vector` at `offset`, continuing short reads; what lies past the
    /// end of the file (shortened behind our back) reads as zeroes.
    func readAll(_ fd: CInt, _ vector: IOVector, at offset: UInt64) throws(BackendError) {
        var done = 0
        while done < vector.byteCount {
            let rest = done == 0 ? vector : vector.dropping(bytes: done)
            // After a short read the rest is unaligned for O_DIRECT: the page cache takes it.
            let n = positioned(
                done == 0 ? fd : buffered.rawValue, rest, at: offset + UInt64(done), write: false, flags: 0)
            if n > 0 {
                done += n
            } else if n == 0 {
                rest.zero()
                return
            } else if n != -Int(EINTR) {
                throw BackendError(
                    .system(errno: Int32(-n)), operation: "read", offset: offset,
                    length: UInt64(vector.byteCount))
            }
        }
    }

    /// Writes all of `vector` at `offset`, continuing short writes. With
    /// `forceUnitAccess` the data is durable on return: `RWF_DSYNC` where the
    /// kernel has it, else a trailing `fdatasync`.
    func writeAll(
        _ fd: CInt, _ vector: IOVector, at offset: UInt64, forceUnitAccess: Bool,
        operation: String = "write"
    ) throws(BackendError) {
        var dsync = forceUnitAccess && supportsDSyncWrite.load(ordering: .relaxed)
        var done = 0
        while done < vector.byteCount {
            let rest = done == 0 ? vector : vector.dropping(bytes: done)
            let n = positioned(
                done == 0 ? fd : buffered.rawValue, rest, at: offset + UInt64(done), write: true,
                flags: dsync ? clinux_RWF_DSYNC : 0)
            if n > 0 {
                done += n
            } else if n == -Int(EINTR) {
                continue
            } else if dsync, done == 0, n == -Int(EOPNOTSUPP) || n == -Int(ENOSYS) {
                // Kernel without RWF_DSYNC (before 4.7): write, then fdatasync.
                supportsDSyncWrite.store(false, ordering: .relaxed)
                dsync = false
            } else {
                // A write returning 0 for a non-empty buffer would loop forever: EIO.
                throw BackendError(
                    .system(errno: n == 0 ? EIO : Int32(-n)), operation: operation, offset: offset,
                    length: UInt64(vector.byteCount))
            }
        }
        if forceUnitAccess && !dsync {
            try syncData(operation: operation, offset: offset, length: UInt64(vector.byteCount))
        }
    }

    /// One positioned transfer: swift-system's absolute-offset read or write for one
    /// segment, `preadv`/`pwritev2` for several or with flags. Bytes moved, or -errno.
    private func positioned(_ fd: CInt, _ vector: IOVector, at offset: UInt64, write: Bool, flags: CInt) -> Int {
        if vector.segmentCount == 1 && flags == 0 {
            let file = FileDescriptor(rawValue: fd)
            let segment = vector[0]
            do {
                // retryOnInterrupt: false, so that EINTR comes back as -EINTR like the shim's.
                return write
                    ? try file.write(
                        toAbsoluteOffset: Int64(offset), UnsafeRawBufferPointer(segment.mutableBytes),
                        retryOnInterrupt: false)
                    : try file.read(
                        fromAbsoluteOffset: Int64(offset), into: segment.mutableBytes, retryOnInterrupt: false)
            } catch {
                return -Int((error as? Errno)?.rawValue ?? EIO)
            }
        }
        return vector.withIOVecs { iov, count in
            Int(
                write
                    ? clinux_pwritev2(fd, iov, count, Int64(offset), flags)
                    : clinux_preadv(fd, iov, count, Int64(offset)))
        }
    }

    func syncData(operation: String, offset: UInt64, length: UInt64) throws(BackendError) {
        while fdatasync(buffered.rawValue) != 0 {
            guard errno == EINTR else {
                throw BackendError(.system(errno: errno), operation: operation, offset: offset, length: length)
            }
        }
    }
}

extension IOVector {
    /// Calls `body` with the segments as an `iovec` array (at most `IOV_MAX`, 1024,
    /// on Linux; a transfer is at most MDTS / 4 KiB + 1 segments).
    func withIOVecs<R>(_ body: (UnsafePointer<iovec>, CInt) -> R) -> R {
        let count = Swift.min(segmentCount, 1024)
        return withUnsafeTemporaryAllocation(of: iovec.self, capacity: Swift.max(count, 1)) { iov in
            for i in 0..<count {
                iov[i] = iovec(iov_base: self[i].base, iov_len: self[i].count)
            }
            return body(UnsafePointer(iov.baseAddress!), CInt(count))
        }
    }
}

/// Memory aligned for direct I/O, freed when the last reference goes. The
/// bounce buffer of one transfer.
final class AlignedBuffer: @unchecked Sendable {
    // Owned: allocated by posix_memalign in init, freed in deinit, never shared
    // beyond the transfer that bounces through it.
    let base: UnsafeMutableRawPointer
    let count: Int

    init(count: Int, alignment: Int, operation: String) throws(BackendError) {
        var pointer: UnsafeMutableRawPointer? = nil
        let rounded = (count + alignment - 1) / alignment * alignment
        guard posix_memalign(&pointer, alignment, Swift.max(rounded, alignment)) == 0, let p = pointer else {
            throw BackendError(.system(errno: ENOMEM), operation: operation, length: UInt64(count))
        }
        base = p
        self.count = count
    }

    var segment: IOSegment { IOSegment(base: base, count: count) }

    deinit { free(base) }
}
#endif
