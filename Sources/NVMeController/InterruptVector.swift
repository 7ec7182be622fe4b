import DMA
import Synchronization

/// One MSI-X vector of the emulated device (NVMe over PCIe Transport Specification
/// §3.5: interrupts). The controller raises it after posting completions; the host
/// connects a handler that must not block (it typically schedules the completion
/// reaping on the host's own thread — an event loop, or an interrupt thread).
///
/// A vector stays pending from the moment it is raised until the host
/// ``acknowledge()``s it, and raising a pending vector delivers nothing new: the
/// host's handler reaps every completion it finds, as Linux's `nvme_irq` does.
/// Acknowledge before reaping, so a completion posted after the reap raises again.
public final class InterruptVector: Sendable {
    public let number: UInt16
    private let pending = Atomic<Bool>(false)
    /// MSI-X vector mask (the Vector Control bit of the MSI-X table entry): while
    /// set, a raised interrupt is held in the Pending Bit Array and delivered on
    /// unmask (PCI Local Bus Specification 3.0, §6.8.2.9).
    private let masked = Atomic<Bool>(false)
    private let held = Atomic<Bool>(false)
    /// The handler lives in a class box: a closure kept directly in a generic
    /// container and read back through `inout` gets re-wrapped in reabstraction
    /// thunks on every access (they nested until the stack overflowed).
    private let handler = Locked<HandlerBox?>(nil)

    private final class HandlerBox: Sendable {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    init(number: UInt16) { self.number = number }

    /// Programs the vector (the MSI-X table entry): `handler` runs on the
    /// controller's thread, so it must only hand the work over.
    public func connect(_ handler: @escaping @Sendable () -> Void) {
        let box = HandlerBox(handler)
        self.handler.withLock { $0 = box }
        pending.store(false, ordering: .sequentiallyConsistent)
    }

    public func disconnect() {
        handler.withLock { $0 = nil }
    }

    /// Host side: marks the interrupt handled. The exchange pairs with the one in
    /// ``raise()``, so every completion posted before a raise that found the vector
    /// pending is visible to the reap that follows this call.
    public func acknowledge() {
        _ = pending.exchange(false, ordering: .acquiringAndReleasing)
    }

    /// Device side: `true` if an interrupt was delivered, `false` if the vector was
    /// still pending (coalesced) or nothing is connected.
    func raise() -> Bool {
        if pending.exchange(true, ordering: .acquiringAndReleasing) { return false }
        if masked.load(ordering: .sequentiallyConsistent) {
            // Hold it; re-check the mask so a concurrent unmask cannot miss it.
            held.store(true, ordering: .sequentiallyConsistent)
            guard !masked.load(ordering: .sequentiallyConsistent),
                  held.exchange(false, ordering: .sequentiallyConsistent) else { return false }
        }
        return deliver()
    }

    private func deliver() -> Bool {
        guard let box = handler.withLock({ $0 }) else {
            pending.store(false, ordering: .releasing)
            return false
        }
        box.run()
        return true
    }

    /// Host side: masks the vector while the host polls the completion queue itself
    /// (as a polling driver does), so the device does not interrupt a host that is
    /// already looking.
    public func mask() {
        masked.store(true, ordering: .sequentiallyConsistent)
    }

    /// Host side: unmasks, delivering an interrupt held while masked.
    public func unmask() {
        masked.store(false, ordering: .sequentiallyConsistent)
        if held.exchange(false, ordering: .sequentiallyConsistent) { _ = deliver() }
    }
}
