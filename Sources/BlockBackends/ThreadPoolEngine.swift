#if os(Linux)
import ConcurrencyHelpers
import DMA
import Foundation
import Synchronization

/// Backend operations on worker threads running the backend's synchronous calls
/// (QEMU's thread-pool AIO, nbdkit's threads): any backend, and the fallback
/// where io_uring is unavailable. Workers take operations in order and finish
/// them in whatever order the storage allows.
///
/// Threading: ``start(_:tag:)``, ``commit()``, ``reap(_:)``, ``inFlight`` belong
/// to the controller thread; the workers share only the job and result lists,
/// under `lock`.
public final class ThreadPoolEngine: StorageEngine, @unchecked Sendable {
    public let name = "threads"
    public let backend: any BlockBackend
    public let workerCount: Int
    private let wake: WakeSignal

    /// Condition 0: workers wait for jobs. Condition 1: `close()` waits for them to exit.
    private let lock = ConditionMutex(conditions: 2)
    // Guarded by `lock`.
    private var jobs: [(StorageOperation, Int)] = []
    private var jobsStart = 0
    private var results: [(Int, StorageResult)] = []
    private var closing = false
    private var running = 0
    /// Workers waiting for a job.
    private var idle = 0
    /// Results waiting, readable without the lock.
    private let ready = Atomic<Int>(0)

    // Controller thread only.
    private var staged: [(StorageOperation, Int)] = []
    private var taken: [(Int, StorageResult)] = []
    public private(set) var inFlight = 0

    public init(backend: any BlockBackend, workers: Int, wake: WakeSignal) {
        precondition(workers >= 1)
        self.backend = backend
        self.workerCount = workers
        self.wake = wake
        running = workers
        for i in 0..<workers {
            let t = Thread { [self] in work() }
            t.name = "nvme-storage-\(i)"
            t.stackSize = 1 << 20
            t.start()
        }
    }

    public var hasCompletions: Bool { ready.load(ordering: .acquiring) > 0 }

    public func start(_ operation: StorageOperation, tag: Int) {
        staged.append((operation, tag))
        inFlight += 1
    }

    public func commit() {
        guard !staged.isEmpty else { return }
        // Wake as many idle workers as there are new jobs, no more (a broadcast
        // would wake every worker to fight over a few jobs).
        let wakeups: Int = lock.withLock {
            jobs.append(contentsOf: staged)
            return min(staged.count, idle)
        }
        staged.removeAll(keepingCapacity: true)
        for _ in 0..<wakeups { lock.signal(0) }
    }

    @discardableResult
    public func reap(_ body: (Int, StorageResult) -> Void) -> Int {
        guard hasCompletions else { return 0 }
        lock.withLock {
            swap(&taken, &results)
            ready.store(0, ordering: .relaxed)
        }
        let n = taken.count
        inFlight -= n
        for (tag, result) in taken { body(tag, result) }
        taken.removeAll(keepingCapacity: true)
        return n
    }

    public func cancelQueued() {
        commit()
        let wasEmpty: Bool = lock.withLock {
            let empty = results.isEmpty
            for (_, tag) in jobs[jobsStart...] { results.append((tag, cancelledResult)) }
            ready.store(results.count, ordering: .releasing)
            jobs.removeAll()
            jobsStart = 0
            return empty
        }
        if wasEmpty { wake.signal() }
    }

    public func close() {
        lock.withLock {
            closing = true
            lock.broadcast(0)
            while running > 0 { lock.wait(1) }
        }
    }

    deinit {
        if lock.withLock({ running > 0 }) { close() }
    }

    private func work() {
        lock.lock()
        while true {
            while jobsStart == jobs.count && !closing {
                idle += 1
                lock.wait(0)
                idle -= 1
            }
            if jobsStart == jobs.count { break }
            let (operation, tag) = jobs[jobsStart]
            jobsStart += 1
            if jobsStart == jobs.count {
                jobs.removeAll(keepingCapacity: true)
                jobsStart = 0
            }
            lock.unlock()
            let result = performSynchronously(operation, on: backend)
            lock.lock()
            results.append((tag, result))
            let first = results.count == 1
            ready.store(results.count, ordering: .releasing)
            if first {
                lock.unlock()
                wake.signal()
                lock.lock()
            }
        }
        running -= 1
        lock.broadcast(1)
        lock.unlock()
    }
}
#endif
