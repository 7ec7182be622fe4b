import Foundation

/// A task executor on threads of its own, outside Swift's cooperative pool.
///
/// The pool has one thread per core (two here), and Swift Testing runs every
/// synchronous test on it: CPU-bound property tests and blocking socket tests
/// hold both threads for a minute at a time. An async test that waits for the
/// driver against a wall-clock deadline then "times out" while its own task
/// never got a thread (seen in full runs under load: driver tests "still waiting
/// after 60 s" that pass alone in 50 ms). Work started with this executor as its
/// preference (SE-0417, `Task(executorPreference:)`) runs here instead, and so
/// does every job it resumes, child tasks included.
///
/// `@unchecked Sendable`: `jobs` and `waiting` are only touched with `condition`
/// locked; the threads live as long as the process (the executor is shared).
public final class DedicatedExecutor: TaskExecutor, @unchecked Sendable {
    /// Four threads for every test that asks: more than the tests that wait on
    /// the driver at once need, few enough not to crowd the machine.
    public static let shared = DedicatedExecutor(threads: 4)

    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var jobsStart = 0

    public init(threads: Int) {
        for i in 0..<threads {
            let thread = Thread { [self] in run() }
            thread.name = "test-executor-\(i)"
            thread.stackSize = 4 << 20
            thread.start()
        }
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        condition.lock()
        jobs.append(unowned)
        condition.signal()
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while jobsStart == jobs.count { condition.wait() }
            let job = jobs[jobsStart]
            jobsStart += 1
            if jobsStart == jobs.count {
                jobs.removeAll(keepingCapacity: true)
                jobsStart = 0
            }
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}
