import Atomics

/// A 32-bit word in DMA memory that host and controller both access: a Shadow
/// Doorbell or EventIdx entry, or the dword of a completion entry that holds the
/// phase tag. All cross-thread ordering of the emulation goes through this type
/// and ``MemoryFence``.
///
/// Invariant: `pointer` is 4-byte aligned and points into a live ``HostMemory``
/// arena (checked when the word is made; the arena outlives every queue). The
/// arena is only ever accessed as raw bytes or through these atomics, so binding
/// the word to `UInt32.AtomicRepresentation` does not alias a typed Swift value.
public struct SharedWord: @unchecked Sendable {
    @usableFromInline let atomic: UnsafeAtomic<UInt32>

    @inlinable
    public init(_ pointer: UnsafeMutableRawPointer) {
        precondition(Int(bitPattern: pointer) & 3 == 0, "SharedWord must be 4-byte aligned")
        atomic = UnsafeAtomic(at: pointer.assumingMemoryBound(to: UInt32.AtomicRepresentation.self))
    }

    @inlinable public func loadAcquire() -> UInt32 { atomic.load(ordering: .acquiring) }
    @inlinable public func loadRelaxed() -> UInt32 { atomic.load(ordering: .relaxed) }
    @inlinable public func storeRelease(_ v: UInt32) { atomic.store(v, ordering: .releasing) }
    @inlinable public func storeRelaxed(_ v: UInt32) { atomic.store(v, ordering: .relaxed) }
}

/// Memory fences, named for what the NVMe doorbell protocol needs them for.
public enum MemoryFence {
    /// Sequentially consistent fence: orders a store before a following load
    /// (Linux `mb()` in `nvme_dbbuf_update_and_check_event`; QEMU's `smp_mb()`
    /// in `nvme_update_sq_eventidx`). Acquire/release is not enough there.
    @inlinable public static func full() { atomicMemoryFence(ordering: .sequentiallyConsistent) }
    /// Release fence: everything before is visible before any later store
    /// (Linux `wmb()` before the shadow doorbell store).
    @inlinable public static func release() { atomicMemoryFence(ordering: .releasing) }
    /// Acquire fence: nothing after is read before an earlier load (Linux
    /// `dma_rmb()` after reading the phase tag).
    @inlinable public static func acquire() { atomicMemoryFence(ordering: .acquiring) }
}
