#if os(Linux)
import CLinuxIO
import Glibc
#endif

/// The backend work of one NVMe I/O command, as a namespace's engine runs it.
public enum StorageOperation: Sendable {
    /// Read (02h): fill the vector from `offset`.
    case read(offset: UInt64, into: IOVector)
    /// Write (01h), FUA per write.
    case write(offset: UInt64, from: IOVector, forceUnitAccess: Bool)
    /// Flush (00h): every write completed before it was started becomes durable.
    case flush
    /// Write Zeroes (08h): DEAC, FUA, and `quickly` (fail rather than write zero
    /// buffers: NBD FAST_ZERO).
    case writeZeroes(offset: UInt64, length: UInt64, deallocate: Bool, quickly: Bool, forceUnitAccess: Bool)
    /// Dataset Management (09h) with Deallocate: byte ranges.
    case deallocate(ranges: [Range<UInt64>])
    /// Get Allocation Map (vendor 82h).
    case allocationMap(offset: UInt64, length: UInt64)
}

/// How an operation ended.
public enum StorageResult: Sendable, Equatable {
    case done
    case extents([AllocationExtent])
    case failed(BackendError)
}

/// The page cache policy of a file or block-device namespace (QEMU's and
/// qemu-nbd's `cache=`).
public enum FileCaching: String, Sendable, Equatable, CaseIterable {
    /// Through the page cache; Flush makes it durable.
    case writeback
    /// `O_DIRECT`: no page cache; the device's own cache is still flushed by Flush.
    case none
}

/// How a namespace's backend operations run.
public enum StorageIO: Hashable, Sendable, CustomStringConvertible {
    /// On the controller thread, one after another: right for memory, where an
    /// operation is a `memcpy`.
    case inline
    /// On a pool of worker threads running the backend's synchronous calls
    /// (QEMU's `aio=threads`); any backend.
    case threads(workers: Int)
    /// io_uring for reads, writes and Flush (QEMU's `aio=io_uring`), a few workers
    /// for zeroing, deallocation and allocation maps; files and block devices only.
    /// Where io_uring is unavailable or refused, worker threads take over.
    case ioUring

    /// Workers of the thread engine by default (nbdkit runs 16 threads).
    public static let defaultWorkers = 16

    public var description: String {
        switch self {
        case .inline: "inline"
        case .threads(let n): "threads (\(n) workers)"
        case .ioUring: "io_uring"
        }
    }
}

/// Runs a namespace's backend operations asynchronously for the controller
/// thread (QEMU's `hw/nvme` hands each request to the block layer's AIO and
/// posts the completion from the callback; this is that AIO).
///
/// Used from one thread, the controller's: ``start(_:tag:)`` queues an
/// operation, ``commit()`` hands queued operations to the kernel or the workers
/// (once per controller round, so a burst costs one system call), ``reap(_:)``
/// delivers finished ones in the order they finished. Each finished operation
/// also signals the ``WakeSignal`` the engine was made with (at least once per
/// batch), so a parked controller wakes for it.
public protocol StorageEngine: AnyObject {
    /// "io_uring", "threads": what the log and the counters call it.
    var name: String { get }
    /// Operations started and not yet reaped.
    var inFlight: Int { get }
    /// Whether ``reap(_:)`` would deliver something (cheap; no system call).
    var hasCompletions: Bool { get }
    /// Queues `operation`; its result comes back from ``reap(_:)`` with `tag`.
    /// The operation's memory stays untouched by the caller until then.
    func start(_ operation: StorageOperation, tag: Int)
    /// Hands queued operations over.
    func commit()
    /// Calls `body` for every finished operation; returns how many.
    @discardableResult
    func reap(_ body: (Int, StorageResult) -> Void) -> Int
    /// Drops queued operations that have not begun (they finish as cancelled,
    /// `ECANCELED`); ones already running finish normally. For reset.
    func cancelQueued()
    /// Stops workers and closes the ring. Only once nothing is in flight.
    func close()
}

/// Runs `operation` synchronously on `backend`: what a worker thread does.
public func performSynchronously(_ operation: StorageOperation, on backend: any BlockBackend) -> StorageResult {
    do throws(BackendError) {
        switch operation {
        case .read(let offset, let vector):
            try backend.read(at: offset, into: vector)
        case .write(let offset, let vector, let fua):
            try backend.write(at: offset, from: vector, forceUnitAccess: fua)
        case .flush:
            try backend.flush()
        case .writeZeroes(let offset, let length, let deallocate, let quickly, let fua):
            if quickly {
                try backend.writeZeroesQuickly(at: offset, length: length, deallocate: deallocate)
            } else {
                try backend.writeZeroes(at: offset, length: length, deallocate: deallocate)
            }
            if fua { try backend.flush() }
        case .deallocate(let ranges):
            for r in ranges where !r.isEmpty {
                try backend.deallocate(at: r.lowerBound, length: r.upperBound - r.lowerBound)
            }
        case .allocationMap(let offset, let length):
            return .extents(try backend.allocationMap(at: offset, length: length))
        }
        return .done
    } catch {
        return .failed(error)
    }
}

/// A cancelled operation's result.
let cancelledResult = StorageResult.failed(BackendError(.system(errno: ECANCELED), operation: "cancelled"))

/// Makes the engine a namespace asks for.
public enum StorageEngines {
    /// The engine for `backend` run as `io` with room for `capacity` operations at
    /// once, signalling `wake`. With ``StorageIO/ioUring`` on a backend io_uring
    /// cannot serve, or where the kernel refuses it, worker threads take over and
    /// `note` says why. `nil` for ``StorageIO/inline``.
    public static func make(
        for backend: any BlockBackend, io: StorageIO, capacity: Int,
        wake: WakeSignal
    ) -> (engine: (any StorageEngine)?, note: String?) {
        switch io {
        case .inline:
            return (nil, nil)
        case .threads(let workers):
            return (ThreadPoolEngine(backend: backend, workers: workers, wake: wake), nil)
        case .ioUring:
            #if os(Linux)
            if let file = backend as? FileBackend {
                do {
                    return (try IOURingEngine(backend: file, capacity: capacity, wake: wake), nil)
                } catch {
                    return (
                        ThreadPoolEngine(backend: backend, workers: StorageIO.defaultWorkers, wake: wake),
                        "io_uring unavailable (\(error)); using \(StorageIO.defaultWorkers) worker threads"
                    )
                }
            }
            #endif
            return (
                ThreadPoolEngine(backend: backend, workers: StorageIO.defaultWorkers, wake: wake),
                "io_uring serves files and block devices only; using \(StorageIO.defaultWorkers) worker threads"
            )
        }
    }
}
