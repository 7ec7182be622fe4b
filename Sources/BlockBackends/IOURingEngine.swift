#if os(Linux)
import CLinuxIO
import Glibc
import SystemPackage

/// A file or block-device namespace on io_uring (QEMU's `aio=io_uring`, SPDK's
/// uring bdev).
///
/// - Read and Write: `IORING_OP_READ`/`WRITE` for one segment, `READV`/`WRITEV`
///   for a PRP list, straight into and out of the command's host memory; FUA is
///   the per-write `RWF_DSYNC` flag. With `cache=none` the `O_DIRECT` descriptor
///   takes aligned transfers, memory that is not aligned is bounced, and offsets
///   or lengths that are not aligned go through the page cache (see
///   ``FileBackend``'s routing). Short transfers are continued; a read that hits
///   the end of the file reads zeroes for the rest.
/// - Flush: `IORING_OP_FSYNC` with `IORING_FSYNC_DATASYNC`, started when the
///   command is fetched: it covers every write completed before, and holds up
///   nothing after it.
/// - Write Zeroes, Deallocate and the allocation map: `fallocate` chains with
///   fallbacks, `BLKDISCARD`/`BLKZEROOUT` ioctls and `lseek` walks have no (or no
///   useful) io_uring form, so a few worker threads run them
///   (``ThreadPoolEngine``); they are rare next to reads and writes.
///
/// The ring has room for `capacity` requests (the namespace's in-flight bound),
/// and twice that in completions, so neither ring can overflow. Completions the
/// kernel posts signal the controller's ``WakeSignal`` (IORING_REGISTER_EVENTFD).
public final class IOURingEngine: StorageEngine {
    public let name = "io_uring"
    public let backend: FileBackend
    private let ring: IOURing
    private let helpers: ThreadPoolEngine
    private var requests: [Request?]
    private var freeSlots: [Int]
    private var immediate: [(Int, StorageResult)] = []
    private var ringInFlight = 0
    /// Completions copied out of the ring per `reap` pass.
    private let completions: UnsafeMutableBufferPointer<clinux_cqe>
    private static let cancelUserData = UInt64.max
    /// Workers for the operations that do not go through the ring.
    public static let helperWorkers = 2

    private struct Request {
        enum Kind { case read, write, flush }
        var tag: Int
        var kind: Kind
        var fd: CInt
        var offset: UInt64
        /// The command's memory (target of a read, source of a write).
        var vector: IOVector
        /// Aligned memory standing in for `vector` (O_DIRECT and unaligned memory).
        var bounce: AlignedBuffer?
        var done = 0
        var flags: UInt32
        /// FUA where the kernel refused RWF_DSYNC: an fdatasync follows the write.
        var syncAfter = false
        /// The iovec array of a vectored entry; owned here, freed at completion.
        var iovecs: UnsafeMutableBufferPointer<iovec>?
        var total: Int { vector.byteCount }
    }

    /// - Throws: the errno of `io_uring_setup` (`ENOSYS` without io_uring, `EPERM`
    ///   when `kernel.io_uring_disabled` or seccomp refuses it) or of the eventfd
    ///   registration.
    public init(backend: FileBackend, capacity: Int, wake: WakeSignal) throws(Errno) {
        let entries = max(8, min(4096, capacity.nextPowerOfTwo))
        ring = try IOURing(entries: entries, completionEntries: 2 * entries)
        try ring.register(wake)
        self.backend = backend
        helpers = ThreadPoolEngine(backend: backend, workers: Self.helperWorkers, wake: wake)
        requests = Array(repeating: nil, count: entries)
        freeSlots = Array((0..<entries).reversed())
        completions = .allocate(capacity: ring.completionEntries)
    }

    deinit {
        helpers.close()
        freeIOVecs()
        completions.deallocate()
    }

    public var inFlight: Int { ringInFlight + helpers.inFlight + immediate.count }

    public var hasCompletions: Bool {
        !immediate.isEmpty || ring.ready > 0 || helpers.hasCompletions
    }

    // MARK: Start

    public func start(_ operation: StorageOperation, tag: Int) {
        switch operation {
        case .read(let offset, let vector):
            startTransfer(.read, offset: offset, vector: vector, fua: false, tag: tag)
        case .write(let offset, let vector, let fua):
            startTransfer(.write, offset: offset, vector: vector, fua: fua, tag: tag)
        case .flush:
            guard !backend.isReadOnly else { return immediate.append((tag, .done)) }
            let slot = takeSlot(
                Request(
                    tag: tag, kind: .flush, fd: backend.buffered.rawValue, offset: 0,
                    vector: IOVector(), flags: clinux_IORING_FSYNC_DATASYNC))
            prepare(slot)
        case .writeZeroes, .deallocate, .allocationMap:
            helpers.start(operation, tag: tag)
        }
    }

    private func startTransfer(_ kind: Request.Kind, offset: UInt64, vector: IOVector, fua: Bool, tag: Int) {
        let length = vector.byteCount
        let name = kind == .read ? "read" : "write"
        let refusal: BackendError.Kind? =
            if offset > backend.byteCount || UInt64(length) > backend.byteCount - offset {
                .outOfRange
            } else if kind == .write && backend.isReadOnly {
                .readOnly
            } else {
                nil
            }
        if let refusal {
            let error = BackendError(refusal, operation: name, offset: offset, length: UInt64(length))
            return immediate.append((tag, .failed(error)))
        }
        guard length > 0 else { return immediate.append((tag, .done)) }
        let route = backend.route(offset: offset, length: length, vector: vector)
        var bounce: AlignedBuffer? = nil
        if route == .bounce {
            do {
                bounce = try AlignedBuffer(count: length, alignment: backend.bounceAlignment, operation: name)
            } catch {
                return immediate.append((tag, .failed(error)))
            }
            if kind == .write { vector.copy(to: bounce!.base) }
        }
        let dsync = fua && backend.supportsDSyncWrite.load(ordering: .relaxed)
        let slot = takeSlot(
            Request(
                tag: tag, kind: kind, fd: backend.descriptor(for: route), offset: offset,
                vector: vector, bounce: bounce, flags: dsync ? UInt32(clinux_RWF_DSYNC) : 0,
                syncAfter: fua && !dsync))
        prepare(slot)
    }

    private func takeSlot(_ request: Request) -> Int {
        let slot: Int
        if let s = freeSlots.popLast() {
            slot = s
        } else {
            // More than the capacity in flight: grow (the ring still takes them, a
            // submission at a time).
            slot = requests.count
            requests.append(nil)
        }
        requests[slot] = request
        ringInFlight += 1
        return slot
    }

    /// Prepares the entry for what is left of request `slot`.
    private func prepare(_ slot: Int) {
        var r = requests[slot]!
        let opcode: UInt8
        var address: UInt64 = 0
        var length: UInt32 = 0
        switch r.kind {
        case .flush:
            opcode = clinux_IORING_OP_FSYNC
        case .read, .write:
            if let b = r.bounce {
                opcode = r.kind == .read ? clinux_IORING_OP_READ : clinux_IORING_OP_WRITE
                address = UInt64(UInt(bitPattern: b.base + r.done))
                length = UInt32(r.total - r.done)
            } else {
                let rest = r.done == 0 ? r.vector : r.vector.dropping(bytes: r.done)
                if rest.segmentCount == 1 {
                    opcode = r.kind == .read ? clinux_IORING_OP_READ : clinux_IORING_OP_WRITE
                    address = UInt64(UInt(bitPattern: rest[0].base))
                    length = UInt32(rest[0].count)
                } else {
                    opcode = r.kind == .read ? clinux_IORING_OP_READV : clinux_IORING_OP_WRITEV
                    let count = min(rest.segmentCount, 1024)
                    if let old = r.iovecs { old.deallocate() }
                    let iov = UnsafeMutableBufferPointer<iovec>.allocate(capacity: count)
                    for i in 0..<count { iov[i] = iovec(iov_base: rest[i].base, iov_len: rest[i].count) }
                    r.iovecs = iov
                    requests[slot] = r
                    address = UInt64(UInt(bitPattern: iov.baseAddress!))
                    length = UInt32(count)
                }
            }
        }
        let offset = r.kind == .flush ? 0 : r.offset + UInt64(r.done)
        if ring.prepare(
            opcode, fd: r.fd, address: address, length: length, offset: offset, flags: r.flags,
            userData: UInt64(slot))
        {
            return
        }
        // The submission ring is full: hand it over and try once more.
        submitPrepared()
        if !ring.prepare(
            opcode, fd: r.fd, address: address, length: length, offset: offset, flags: r.flags,
            userData: UInt64(slot))
        {
            immediate.append(
                (
                    release(slot),
                    .failed(
                        BackendError(
                            .system(errno: EAGAIN), operation: "io_uring submission",
                            offset: r.offset, length: UInt64(r.total)))
                ))
        }
    }

    // MARK: Commit and reap

    public func commit() {
        if ring.pending > 0 { submitPrepared() }
        helpers.commit()
    }

    private func submitPrepared() {
        while true {
            switch ring.submit() {
            case .success: return
            case .failure(let e) where e == .interrupted: continue
            // EAGAIN/EBUSY: resources or completions pending; the entries stay
            // prepared and the next commit or reap hands them over.
            case .failure: return
            }
        }
    }

    @discardableResult
    public func reap(_ body: (Int, StorageResult) -> Void) -> Int {
        var delivered = 0
        if !immediate.isEmpty {
            let batch = immediate
            immediate.removeAll(keepingCapacity: true)
            for (tag, result) in batch { body(tag, result) }
            delivered += batch.count
        }
        delivered += helpers.reap(body)
        var again = false
        while ring.ready > 0 {
            let n = ring.reap(into: completions)
            for i in 0..<n {
                let c = completions[i]
                guard c.user_data != Self.cancelUserData else { continue }
                if handle(Int(c.user_data), c.res, body) { delivered += 1 } else { again = true }
            }
        }
        if again || ring.pending > 0 { submitPrepared() }
        return delivered
    }

    /// One completion of request `slot`. Returns `true` when the request finished,
    /// `false` when it was prepared again (the rest of a short transfer, a retry).
    private func handle(_ slot: Int, _ res: Int32, _ body: (Int, StorageResult) -> Void) -> Bool {
        guard var r = requests[slot] else { return false }
        if res == -EINTR || res == -EAGAIN {
            prepare(slot)
            return false
        }
        let name = r.kind == .read ? "read" : r.kind == .write ? "write" : "flush"
        if res < 0 {
            if r.kind == .write, res == -EOPNOTSUPP, r.flags & UInt32(clinux_RWF_DSYNC) != 0 {
                // No RWF_DSYNC here: write plainly, then fdatasync.
                backend.supportsDSyncWrite.store(false, ordering: .relaxed)
                r.flags = 0
                r.syncAfter = true
                requests[slot] = r
                prepare(slot)
                return false
            }
            finish(
                slot,
                .failed(
                    BackendError(
                        .system(errno: -res), operation: name, offset: r.offset,
                        length: UInt64(r.total))), body)
            return true
        }
        switch r.kind {
        case .flush:
            finish(slot, .done, body)
            return true
        case .read where res == 0:
            // End of file (shortened behind our back): the rest reads as a hole would.
            if let b = r.bounce {
                (b.base + r.done).initializeMemory(as: UInt8.self, repeating: 0, count: r.total - r.done)
            } else {
                r.vector.dropping(bytes: r.done).zero()
            }
            r.done = r.total
        case .write where res == 0:
            finish(
                slot,
                .failed(
                    BackendError(
                        .system(errno: EIO), operation: name, offset: r.offset,
                        length: UInt64(r.total))), body)
            return true
        case .read, .write:
            r.done += Int(res)
        }
        if r.done < r.total {
            // The rest of a short transfer is unaligned for O_DIRECT: the page cache takes it.
            r.fd = backend.buffered.rawValue
            requests[slot] = r
            prepare(slot)
            return false
        }
        if r.kind == .write && r.syncAfter {
            r.kind = .flush
            r.flags = clinux_IORING_FSYNC_DATASYNC
            r.fd = backend.buffered.rawValue
            requests[slot] = r
            prepare(slot)
            return false
        }
        if r.kind == .read, let b = r.bounce { r.vector.copy(from: b.base) }
        finish(slot, .done, body)
        return true
    }

    private func finish(_ slot: Int, _ result: StorageResult, _ body: (Int, StorageResult) -> Void) {
        body(release(slot), result)
    }

    /// Frees request `slot`; returns its tag.
    private func release(_ slot: Int) -> Int {
        let r = requests[slot]!
        r.iovecs?.deallocate()
        requests[slot] = nil
        freeSlots.append(slot)
        ringInFlight -= 1
        return r.tag
    }

    // MARK: Reset and close

    public func cancelQueued() {
        helpers.cancelQueued()
        guard ringInFlight > 0 else { return }
        // IORING_ASYNC_CANCEL_ANY (5.19+); on older kernels the cancel itself fails
        // and the requests simply finish.
        if ring.prepare(
            clinux_IORING_OP_ASYNC_CANCEL, fd: -1, address: 0, length: 0, offset: 0,
            flags: clinux_IORING_ASYNC_CANCEL_ANY, userData: Self.cancelUserData)
        {
            submitPrepared()
        }
    }

    public func close() {
        helpers.close()
    }

    private func freeIOVecs() {
        for case let r? in requests { r.iovecs?.deallocate() }
    }
}

extension Int {
    /// The smallest power of two at least `self` (1 for 0 and below).
    var nextPowerOfTwo: Int {
        guard self > 1 else { return 1 }
        return 1 << (Int.bitWidth - (self - 1).leadingZeroBitCount)
    }
}
#endif
