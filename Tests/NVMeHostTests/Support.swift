import BlockBackends
import ConcurrencyHelpers
import DMA
import Foundation
import NVMe
import NVMeController
import NVMeHost
import Synchronization
import TestSupport
import Testing

// MARK: Raw commands and waiting

/// Submits one raw command on a threaded queue pair and waits for its completion entry.
func rawCommand(_ qp: QueuePair, _ e: SubmissionQueueEntry, data: QueuePair.DataPages? = nil) async
    -> CompletionQueueEntry
{
    await withUnsafeContinuation { c in qp.submit(e, data: data) { c.resume(returning: $0) } }
}

/// Polls `condition` (cheap, non-blocking) until it holds or `seconds` (stretched
/// by ``WaitScale``) pass.
func eventually(_ seconds: Double = 20, _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(WaitScale.seconds(seconds) * 1000))
    while !condition() {
        if ContinuousClock.now > deadline { return false }
        try? await Task.sleep(for: .milliseconds(1))
    }
    return true
}

// MARK: A backend the test can stall

/// Wraps a backend; while the gate is closed every operation blocks the calling
/// thread (the controller's) at the gate, so commands pile up in the queues.
final class GatedBackend: BlockBackend, @unchecked Sendable {
    let base: any BlockBackend
    private let lock = ConditionMutex()
    private var closed = false
    private var blocked = 0

    init(_ base: any BlockBackend) { self.base = base }

    var byteCount: UInt64 { base.byteCount }
    var isReadOnly: Bool { base.isReadOnly }
    var hasVolatileWriteCache: Bool { base.hasVolatileWriteCache }

    func close() { lock.withLock { closed = true } }
    func open() {
        lock.withLock {
            closed = false
            lock.broadcast()
        }
    }
    /// Threads waiting at the gate now.
    var blockedCount: Int { lock.withLock { blocked } }

    private func pass() {
        lock.withLock {
            guard closed else { return }
            blocked += 1
            while closed { lock.wait() }
            blocked -= 1
        }
    }

    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(BackendError) {
        pass(); try base.read(at: offset, into: buffer)
    }
    func write(at offset: UInt64, from buffer: UnsafeRawBufferPointer, forceUnitAccess: Bool) throws(BackendError) {
        pass(); try base.write(at: offset, from: buffer, forceUnitAccess: forceUnitAccess)
    }
    func flush() throws(BackendError) { pass(); try base.flush() }
    func deallocate(at offset: UInt64, length: UInt64) throws(BackendError) {
        pass(); try base.deallocate(at: offset, length: length)
    }
    func writeZeroes(at offset: UInt64, length: UInt64, deallocate: Bool) throws(BackendError) {
        pass(); try base.writeZeroes(at: offset, length: length, deallocate: deallocate)
    }
    func allocationMap(at offset: UInt64, length: UInt64) throws(BackendError) -> [AllocationExtent] {
        pass(); return try base.allocationMap(at: offset, length: length)
    }
}

// MARK: Temporary files

/// Where a file namespace lives.
enum FileLocation: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case tmp, shm
    var testDescription: String { rawValue }
    var directory: String { self == .tmp ? "/tmp" : "/dev/shm" }
    static var available: [FileLocation] {
        allCases.filter { FileManager.default.fileExists(atPath: $0.directory) }
    }
}

/// A unique file path, removed when the object goes away.
final class TemporaryFile: Sendable {
    let path: String
    init(in directory: String) {
        path = "\(directory)/nvme-nbd-hosttest-\(getpid())-\(UUID().uuidString).img"
    }
    deinit { unlink(path) }

    /// Reads the file directly (pread), bypassing the controller.
    func contents(at offset: UInt64, count: Int) -> [UInt8]? {
        let fd = Glibc.open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var out = [UInt8](repeating: 0xA5, count: count)
        let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
        return n == count ? out : nil
    }

    /// 512-byte blocks allocated to the file (`st_blocks`).
    var allocatedBlocks: Int64? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Int64(st.st_blocks)
    }

    /// Whether `[offset, offset+length)` is entirely a hole (SEEK_DATA finds no data in it).
    func isHole(at offset: UInt64, length: UInt64) -> Bool? {
        let fd = Glibc.open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        let data = lseek(fd, off_t(offset), 3 /* SEEK_DATA */)
        if data < 0 { return errno == ENXIO }
        return UInt64(data) >= offset + length
    }

    /// Whether `[offset, offset+length)` is entirely data (SEEK_HOLE finds no hole in it).
    func isData(at offset: UInt64, length: UInt64) -> Bool? {
        let fd = Glibc.open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        let hole = lseek(fd, off_t(offset), 4 /* SEEK_HOLE */)
        guard hole >= 0 else { return nil }
        return UInt64(hole) >= offset + length
    }
}

// MARK: Never hang

/// Runs `body` (which waits for the driver) and, should it still be waiting after
/// `seconds`, records an issue and shuts the driver down, which fails whatever is
/// outstanding, so a lost completion makes the test fail instead of hang.
@discardableResult
func guarded<T: Sendable>(
    _ rig: Rig, seconds: Double = 60, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T? {
    let done = Shared(false)
    // Off the cooperative pool, which synchronous tests may hold for minutes: the
    // deadline below must measure the driver, not the wait for a pool thread.
    let task = Task(executorPreference: DedicatedExecutor.shared) {
        defer { done.withLock { $0 = true } }
        return try await body()
    }
    if !(await eventually(seconds) { done.value }) {
        Issue.record(
            "still waiting for the driver after \(WaitScale.seconds(seconds)) s: shutting it down",
            sourceLocation: sourceLocation)
        rig.driver.shutdown()
        guard await eventually(15, { done.value }) else {
            Issue.record("still hung after the shutdown", sourceLocation: sourceLocation)
            return nil
        }
    }
    return try await task.value
}
