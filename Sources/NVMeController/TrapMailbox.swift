import BlockBackends
import ConcurrencyHelpers
import DMA
import Synchronization

/// One register write the host made: a trap into the device.
struct RegisterWrite: Sendable {
    var offset: UInt32
    var value: UInt64
    /// 4 or 8 bytes.
    var width: Int
}

/// The hand-off between a host thread writing BAR0 and the controller thread —
/// the emulation's VM exit. A writer records its value, wakes the controller if it
/// is parked, and does not continue until the controller has taken the write
/// (README, "The data path": a trap is a hand-off). The controller only records and
/// acknowledges when taking a trap; it never waits for the host, so a controller
/// holding completions for a full queue cannot deadlock a host stuck in a trap.
///
/// The same lock guards the register file (``RegisterFile``) that MMIO reads see.
final class TrapMailbox: @unchecked Sendable {
    /// Condition 0: the controller parks on it. Condition 1: writers wait on it.
    let lock = ConditionMutex(conditions: 2)
    private static let controllerCondition = 0
    private static let writerCondition = 1

    // Guarded by `lock`.
    private var queue: [RegisterWrite] = []
    private var posted: UInt64 = 0
    private var taken: UInt64 = 0
    private var parked = false
    private var open = true
    /// Whether writers wait for the controller (threaded mode) or only record (stepped mode).
    private let handsOff: Bool
    /// With asynchronous storage the controller parks on this eventfd instead of
    /// the condition, so that storage completions wake it as traps do.
    private let wakeSignal: WakeSignal?

    /// Lets the controller thread see pending traps without taking the lock.
    private let pendingCount = Atomic<Int>(0)
    private let openFlag = Atomic<Bool>(true)

    init(handsOff: Bool, wake: WakeSignal? = nil) {
        self.handsOff = handsOff
        self.wakeSignal = wake
        queue.reserveCapacity(64)
    }

    /// Host side. `record` runs under the lock (it updates the register file).
    ///
    /// Wake-ups are signalled after the lock is released: a thread woken while the
    /// signaller still holds the lock would only block again on the mutex (one more
    /// context switch per trap, measured as lock waits in the profile). The
    /// predicates are re-checked under the lock, so a late signal is at worst a
    /// spurious wake-up.
    func trap(_ write: RegisterWrite, record: () -> Void) {
        lock.lock()
        record()
        guard open else { lock.unlock(); return }
        queue.append(write)
        posted &+= 1
        let ticket = posted
        pendingCount.add(1, ordering: .releasing)
        let wake = parked
        lock.unlock()
        if wake { wakeController() }
        guard handsOff else { return }
        lock.lock()
        while taken < ticket && open {
            lock.wait(Self.writerCondition)
        }
        lock.unlock()
    }

    /// Controller side: true when traps are waiting (a cheap check for the hot loop).
    @inline(__always)
    var hasPending: Bool { pendingCount.load(ordering: .acquiring) > 0 }

    /// Controller side: takes every pending trap, in order, and releases their writers.
    func take(into out: inout [RegisterWrite]) {
        guard hasPending else { return }
        lock.lock()
        out.append(contentsOf: queue)
        queue.removeAll(keepingCapacity: true)
        taken = posted
        pendingCount.store(0, ordering: .relaxed)
        lock.unlock()
        lock.broadcast(Self.writerCondition)
    }

    private func wakeController() {
        if let wakeSignal { wakeSignal.signal() } else { lock.signal(Self.controllerCondition) }
    }

    /// Controller side: sleeps until a trap arrives or the mailbox closes. Returns
    /// `false` when closed.
    func park() -> Bool {
        if wakeSignal != nil { return parkOnSignal(storageReady: { false }) }
        lock.lock()
        defer { lock.unlock() }
        while queue.isEmpty && open {
            parked = true
            lock.wait(Self.controllerCondition)
            parked = false
        }
        return open
    }

    /// Controller side, with asynchronous storage: sleeps until a trap arrives, a
    /// storage completion signals, or the mailbox closes. The eventfd is cleared
    /// first and `storageReady` checked after `parked` is set, so neither a trap
    /// (it sees `parked` under the lock and signals) nor a completion (it signals
    /// after becoming visible) can slip between the check and the sleep. May
    /// return without work (a stale signal): the caller just runs another round.
    func parkOnSignal(storageReady: () -> Bool) -> Bool {
        guard let wakeSignal else { return park() }
        wakeSignal.drain()
        lock.lock()
        guard queue.isEmpty && open else {
            lock.unlock()
            return isOpenFast
        }
        parked = true
        lock.unlock()
        if !storageReady() { wakeSignal.wait(timeoutMilliseconds: -1) }
        lock.withLock { parked = false }
        return isOpenFast
    }

    /// Stops the hand-off: releases waiting writers and a parked controller; later
    /// traps only record their register value.
    func close() {
        openFlag.store(false, ordering: .releasing)
        lock.withLock {
            open = false
            lock.broadcast(Self.writerCondition)
            lock.signal(Self.controllerCondition)
        }
        wakeSignal?.signal()
    }

    /// Under the lock (for register reads).
    func withLock<T>(_ body: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }

    var isOpen: Bool { withLock { open } }

    /// Without the lock, for the controller loop.
    var isOpenFast: Bool { openFlag.load(ordering: .acquiring) }
}
