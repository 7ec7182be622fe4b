import DMA
import NVMe
import PCIe

/// One doorbell of a host queue: the MMIO register and, once the Doorbell Buffer
/// Config command succeeded, its Shadow Doorbell and EventIdx entries.
///
/// ``ring(_:)`` is Linux's `nvme_dbbuf_update_and_check_event` followed by the
/// `writel` it guards: a release store of the new value into the shadow entry (the
/// queue entries written before it become visible first: `wmb()`), a full fence
/// (the store must be ordered before the EventIdx load: `mb()`), the EventIdx
/// load, and the MMIO write only when EventIdx lies in `[old, new)`.
struct Doorbell {
    let function: any PCIFunction
    let register: UInt32
    var shadow: SharedWord?
    var eventIndex: SharedWord?

    init(function: any PCIFunction, register: UInt32) {
        self.function = function
        self.register = register
    }

    /// Returns whether the host trapped (wrote the MMIO register).
    @inline(__always)
    func ring(_ value: UInt16) -> Bool {
        if let shadow, let eventIndex {
            let old = UInt16(truncatingIfNeeded: shadow.loadRelaxed())
            shadow.storeRelease(UInt32(value))
            MemoryFence.full()
            let ei = UInt16(truncatingIfNeeded: eventIndex.loadRelaxed())
            guard EventIndex.needsEvent(eventIndex: ei, new: value, old: old) else { return false }
        }
        function.write32(bar0: register, UInt32(value))
        return true
    }

    var isShadowed: Bool { shadow != nil }
}
