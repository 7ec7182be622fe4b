#if os(Linux)
import CLinuxIO
import Glibc
import SystemPackage

/// One io_uring instance (io_uring(7)) through the CLinuxIO shim: submission
/// entries prepared here, handed to the kernel by ``submit(waitingFor:)``,
/// completions copied out by ``reap(into:)``.
///
/// Not thread-safe: one thread prepares, submits and reaps (the controller
/// thread), as with liburing.
///
/// Invariant: `ring` points to a `clinux_uring` this object allocated and
/// `clinux_uring_setup` initialised; it is torn down and freed in `deinit` only.
final class IOURing {
    private let ring: UnsafeMutablePointer<clinux_uring>
    let submissionEntries: Int
    let completionEntries: Int

    /// Sets up a ring of `entries` submission and `completionEntries` completion
    /// entries (both rounded up to powers of two by the kernel).
    init(entries: Int, completionEntries: Int, flags: UInt32 = 0) throws(Errno) {
        ring = .allocate(capacity: 1)
        var result = clinux_uring_setup(ring, UInt32(entries), UInt32(completionEntries), flags)
        if result == -EINVAL && flags != 0 {
            // A kernel that does not know a flag: plain ring.
            result = clinux_uring_setup(ring, UInt32(entries), UInt32(completionEntries), 0)
        }
        guard result == 0 else {
            ring.deallocate()
            throw Errno(rawValue: -result)
        }
        submissionEntries = Int(ring.pointee.sq_entries)
        self.completionEntries = Int(ring.pointee.cq_entries)
    }

    deinit {
        clinux_uring_teardown(ring)
        ring.deallocate()
    }

    /// The kernel signals `signal` for every completion posted outside
    /// ``submit(waitingFor:)`` (IORING_REGISTER_EVENTFD).
    func register(_ signal: WakeSignal) throws(Errno) {
        let result = clinux_uring_register_eventfd(ring, signal.descriptor)
        guard result == 0 else { throw Errno(rawValue: -result) }
    }

    /// Prepared entries the kernel has not taken yet.
    var pending: Int { Int(clinux_uring_sq_pending(ring)) }

    /// Completions waiting to be reaped.
    var ready: Int { Int(clinux_uring_cq_ready(ring)) }

    /// Prepares one entry; `false` when the submission ring is full.
    func prepare(
        _ opcode: UInt8, fd: CInt, address: UInt64, length: UInt32, offset: UInt64, flags: UInt32,
        userData: UInt64
    ) -> Bool {
        clinux_uring_prep(ring, opcode, fd, address, length, offset, flags, userData) == 0
    }

    /// Hands prepared entries to the kernel, waiting for `count` completions when
    /// non-zero. Returns the entries taken, or the errno (EINTR, EAGAIN and EBUSY
    /// mean "later": the entries stay prepared).
    @discardableResult
    func submit(waitingFor count: Int = 0) -> Result<Int, Errno> {
        let n = clinux_uring_submit(ring, UInt32(count))
        return n >= 0 ? .success(Int(n)) : .failure(Errno(rawValue: -n))
    }

    /// Copies out up to `buffer.count` completions; returns how many.
    func reap(into buffer: UnsafeMutableBufferPointer<clinux_cqe>) -> Int {
        Int(clinux_uring_reap(ring, buffer.baseAddress!, UInt32(buffer.count)))
    }
}
#endif
