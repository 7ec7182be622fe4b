import ConcurrencyHelpers
import DMA
import Synchronization

/// One MSI-X vector of the emulated device (NVMe over PCIe Transport
/// Specification §3.5; PCI Local Bus Specification 3.0, §6.8.2): the message the
/// host programmed (a handler standing for its address and data), the Mask Bit
/// of the entry's Vector Control word, and its Pending Bit.
///
/// ``raise()`` sends one message each time the controller signals a completion
/// queue, as a device does; a host that is already servicing the vector merges
/// the message on its side (``NVMeHost``'s interrupt line). While the vector is
/// masked, a raise only sets the Pending Bit, and unmasking sends the held
/// message (§6.8.2.9).
public final class InterruptVector: Sendable {
    public let number: UInt16
    private let masked = Atomic<Bool>(false)
    private let pendingBit = Atomic<Bool>(false)
    /// The handler lives in a class box: a closure kept directly in a generic
    /// container and read back through `inout` gets re-wrapped in reabstraction
    /// thunks on every access (they nested until the stack overflowed).
    private let handler = Locked<HandlerBox?>(nil)

    private final class HandlerBox: Sendable {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    init(number: UInt16) { self.number = number }

    /// Programs the message: `handler` runs on the controller's thread, so it must
    /// only hand the work over.
    func connect(_ handler: @escaping @Sendable () -> Void) {
        let box = HandlerBox(handler)
        self.handler.withLock { $0 = box }
    }

    func disconnect() {
        handler.withLock { $0 = nil }
    }

    /// Whether the Mask Bit is set.
    var isMasked: Bool { masked.load(ordering: .sequentiallyConsistent) }
    /// Whether a message is held by the mask (the Pending Bit).
    var isPending: Bool { pendingBit.load(ordering: .sequentiallyConsistent) }

    /// Device side: sends the message, or holds it while masked. `true` when sent.
    func raise() -> Bool {
        if masked.load(ordering: .sequentiallyConsistent) {
            pendingBit.store(true, ordering: .sequentiallyConsistent)
            // Re-check: an unmask between the load and the store must not strand it.
            guard !masked.load(ordering: .sequentiallyConsistent),
                pendingBit.exchange(false, ordering: .sequentiallyConsistent)
            else { return false }
        }
        return send()
    }

    /// The host wrote the Mask Bit (recorded with the trap). Returns `true` when
    /// unmasking released a held message: the caller sends it with ``send()``
    /// once it holds no lock.
    func setMask(_ on: Bool) -> Bool {
        masked.store(on, ordering: .sequentiallyConsistent)
        return !on && pendingBit.exchange(false, ordering: .sequentiallyConsistent)
    }

    /// Delivers the message to the host's handler; `false` when none is programmed.
    @discardableResult
    func send() -> Bool {
        guard let box = handler.withLock({ $0 }) else { return false }
        box.run()
        return true
    }
}
