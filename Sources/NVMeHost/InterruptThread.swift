import ConcurrencyHelpers
import DMA
import Foundation

/// A host thread that services one queue pair's interrupt, as a CPU runs
/// `nvme_irq`: it sleeps until the vector fires, then reaps the completion queue.
/// For users of the driver without an event loop of their own.
final class InterruptThread: @unchecked Sendable {
    private let lock = ConditionMutex()
    // Guarded by `lock`.
    private var pending = false
    private var stopping = false
    private var running = true

    init(name: String, _ handler: @escaping @Sendable () -> Void) {
        let t = Thread { [self] in
            while true {
                lock.lock()
                while !pending && !stopping { lock.wait() }
                let stop = stopping && !pending
                pending = false
                lock.unlock()
                if stop { break }
                handler()
            }
            lock.withLock {
                running = false
                lock.broadcast()
            }
        }
        t.name = name
        t.start()
    }

    /// Called from the controller thread: never blocks beyond the short lock.
    func fire() {
        lock.withLock {
            pending = true
            lock.signal()
        }
    }

    func stop() {
        lock.withLock {
            stopping = true
            lock.broadcast()
            while running { lock.wait() }
        }
    }
}
