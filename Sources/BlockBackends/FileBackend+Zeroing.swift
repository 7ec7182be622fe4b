#if os(Linux)
import CLinuxIO
import Glibc
import Synchronization

/// Deallocate and Write Zeroes of a ``FileBackend`` (see the type's table).
extension FileBackend {
    /// Regular files: punches a hole, or writes zeroes where that is refused.
    /// Block devices: `BLKDISCARD`, advisory (nothing happens where the device
    /// cannot discard the range).
    public func deallocate(at offset: UInt64, length: UInt64) throws(BackendError) {
        try checkWritable(offset, length, "deallocate")
        guard length > 0 else { return }
        switch fileKind {
        case .regularFile:
            try zeroRegularFile(
                offset: offset, length: length, deallocate: true, quickly: false, operation: "deallocate")
        case .blockDevice:
            let result = clinux_block_discard(buffered.rawValue, offset, length)
            guard result == 0 || result == -EOPNOTSUPP || result == -EINVAL else {
                throw BackendError(.system(errno: -result), operation: "deallocate", offset: offset, length: length)
            }
        }
    }

    public func writeZeroes(at offset: UInt64, length: UInt64, deallocate: Bool) throws(BackendError) {
        try zero(offset: offset, length: length, deallocate: deallocate, quickly: false)
    }

    public func writeZeroesQuickly(at offset: UInt64, length: UInt64, deallocate: Bool) throws(BackendError) {
        try zero(offset: offset, length: length, deallocate: deallocate, quickly: true)
    }

    private func zero(offset: UInt64, length: UInt64, deallocate: Bool, quickly: Bool) throws(BackendError) {
        try checkWritable(offset, length, "writeZeroes")
        guard length > 0 else { return }
        switch fileKind {
        case .regularFile:
            try zeroRegularFile(
                offset: offset, length: length, deallocate: deallocate, quickly: quickly,
                operation: "writeZeroes")
        case .blockDevice:
            try zeroBlockDevice(offset: offset, length: length, deallocate: deallocate, quickly: quickly)
        }
    }

    // MARK: Regular files

    /// With `deallocate`: punch a hole. Without: `FALLOC_FL_ZERO_RANGE`, else punch
    /// and allocate again. Last resort: write zero buffers — or, `quickly`, refuse.
    private func zeroRegularFile(
        offset: UInt64, length: UInt64, deallocate: Bool, quickly: Bool,
        operation: String
    ) throws(BackendError) {
        let zeroRange = clinux_FALLOC_FL_ZERO_RANGE | clinux_FALLOC_FL_KEEP_SIZE
        if !deallocate, try tryFallocate(zeroRange, while: supportsZeroRange, offset, length, operation) { return }
        let punchHole = clinux_FALLOC_FL_PUNCH_HOLE | clinux_FALLOC_FL_KEEP_SIZE
        if try tryFallocate(punchHole, while: supportsPunchHole, offset, length, operation) {
            // The range reads as zeroes now. Without DEAC, allocate it again where
            // the file system can (keeping the "stays allocated" promise). A failure
            // (ENOSPC and the like): the zeroes are there, the reservation is not.
            if !deallocate {
                _ = try tryFallocate(clinux_FALLOC_FL_KEEP_SIZE, while: supportsAllocate, offset, length, operation)
            }
            return
        }
        if quickly { throw BackendError(.zeroingNotFast, operation: operation, offset: offset, length: length) }
        try writeZeroBuffers(offset: offset, length: length, operation: operation)
    }

    // MARK: Block devices

    /// DEAC: the kernel's zero-out with unmap and no fallback
    /// (`fallocate(PUNCH_HOLE | KEEP_SIZE)` on a block device), then `BLKZEROOUT`.
    /// `BLKZEROOUT` writes zero pages itself when the device has no Write Zeroes,
    /// so `quickly` refuses on such a device.
    private func zeroBlockDevice(offset: UInt64, length: UInt64, deallocate: Bool, quickly: Bool) throws(BackendError) {
        let punchHole = clinux_FALLOC_FL_PUNCH_HOLE | clinux_FALLOC_FL_KEEP_SIZE
        if deallocate, try tryFallocate(punchHole, while: supportsPunchHole, offset, length, "writeZeroes") { return }
        if quickly && !zeroesInHardware {
            throw BackendError(.zeroingNotFast, operation: "writeZeroes", offset: offset, length: length)
        }
        var result: CInt
        repeat { result = clinux_block_zeroout(buffered.rawValue, offset, length) } while result == -EINTR
        if result == 0 { return }
        // EINVAL: a range not aligned to the device's logical blocks (an LBA smaller
        // than the device's). Write the zeroes through the page cache instead.
        guard result == -EINVAL || result == -EOPNOTSUPP else {
            throw BackendError(.system(errno: -result), operation: "writeZeroes", offset: offset, length: length)
        }
        if quickly { throw BackendError(.zeroingNotFast, operation: "writeZeroes", offset: offset, length: length) }
        try writeZeroBuffers(offset: offset, length: length, operation: "writeZeroes")
    }

    // MARK: Helpers

    private enum FallocateOutcome {
        case done
        /// The mode is not supported: permanently (`EOPNOTSUPP`, `ENOSYS`, `ENODEV`) or
        /// for this request only (`EINVAL`, e.g. a block device and a range not
        /// aligned to its logical block size).
        case unsupported(permanently: Bool)
        case failed(Int32)
    }

    /// `fallocate(mode)` over the range unless `supported` says the file system
    /// lacks the mode: `true` once done, `false` when not supported (clearing
    /// `supported` when that is permanent); an error throws.
    private func tryFallocate(
        _ mode: CInt, while supported: borrowing Atomic<Bool>, _ offset: UInt64, _ length: UInt64,
        _ operation: String
    ) throws(BackendError) -> Bool {
        guard supported.load(ordering: .relaxed) else { return false }
        switch fallocateRange(mode, offset: offset, length: length) {
        case .done: return true
        case .unsupported(let permanently):
            if permanently { supported.store(false, ordering: .relaxed) }
            return false
        case .failed(let e):
            throw BackendError(.system(errno: e), operation: operation, offset: offset, length: length)
        }
    }

    private func fallocateRange(_ mode: CInt, offset: UInt64, length: UInt64) -> FallocateOutcome {
        while true {
            // The caller range-checked [offset, offset+length) against byteCount <= Int64.max.
            let result = clinux_fallocate(buffered.rawValue, mode, Int64(offset), Int64(length))
            switch -result {
            case 0: return .done
            case EINTR: continue
            case EOPNOTSUPP, ENOSYS, ENODEV: return .unsupported(permanently: true)
            case EINVAL: return .unsupported(permanently: false)
            case let e: return .failed(e)
            }
        }
    }

    /// Writes zeroes over the range through the page cache, at most
    /// ``ZeroBuffer/count`` bytes per call.
    private func writeZeroBuffers(offset: UInt64, length: UInt64, operation: String) throws(BackendError) {
        var position = offset
        let end = offset + length
        while position < end {
            let n = Int(min(UInt64(ZeroBuffer.count), end - position))
            // The zero buffer is only read from; the mutable pointer is the carrier type.
            let segment = IOSegment(base: UnsafeMutableRawPointer(mutating: ZeroBuffer.bytes.baseAddress!), count: n)
            try writeAll(
                buffered.rawValue, IOVector(segment), at: position, forceUnitAccess: false, operation: operation)
            position += UInt64(n)
        }
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
