import Atomics
import ConcurrencyHelpers

/// The device's view of host buffers mapped for DMA outside the arena: a tiny
/// IOMMU. Mapping `n` gets the bus window `base + n << 32` (4 GiB each); a bus
/// address there translates to `pointer + offset` while the mapping lasts.
///
/// Each slot is two atomic words (page-aligned host address, mapped length
/// counted from it), so the controller thread can translate while host threads
/// map and unmap other slots. A slot is written before the command naming it is
/// published (the doorbell orders it) and cleared after its completion was
/// reaped, so a well-behaved host never races the device on one slot; a
/// misbehaving command naming a stale window reads 0 and gets a Data Transfer
/// Error, never freed memory.
///
/// Invariants: `words` holds `2 * slots` atomic words for the object's life; a
/// non-zero slot describes memory the mapper keeps alive until it unmaps it.
public final class IOMappings: @unchecked Sendable {
    public static let base: UInt64 = 0x4000_0000_0000
    static let windowShift: UInt64 = 32
    static let slots = 1 << 14

    private let words: UnsafeMutablePointer<UInt64.AtomicRepresentation>
    private let free = Locked<[Int]>(Array((0..<IOMappings.slots).reversed()))

    init() {
        words = .allocate(capacity: 2 * Self.slots)
        words.initialize(repeating: UInt64.AtomicRepresentation(0), count: 2 * Self.slots)
    }

    deinit {
        words.deinitialize(count: 2 * Self.slots)
        words.deallocate()
    }

    @inline(__always)
    private func word(_ i: Int) -> UnsafeAtomic<UInt64> { UnsafeAtomic(at: words + i) }

    func map(_ pointer: UnsafeMutableRawPointer, length: Int) -> UInt64? {
        precondition(length > 0 && length < 1 << 32 - 4096, "DMA mapping of \(length) bytes")
        guard let slot = free.withLock({ $0.popLast() }) else { return nil }
        let address = UInt(bitPattern: pointer)
        let pageOffset = address & 0xFFF
        word(2 * slot).store(UInt64(address - pageOffset), ordering: .relaxed)
        word(2 * slot + 1).store(UInt64(length) + UInt64(pageOffset), ordering: .releasing)
        return Self.base + UInt64(slot) << Self.windowShift + UInt64(pageOffset)
    }

    func unmap(_ address: UInt64) {
        let slot = Int((address - Self.base) >> Self.windowShift)
        precondition(slot >= 0 && slot < Self.slots, "not a DMA mapping")
        word(2 * slot + 1).store(0, ordering: .releasing)
        word(2 * slot).store(0, ordering: .relaxed)
        free.withLock { $0.append(slot) }
    }

    @inline(__always)
    func pointer(at address: UInt64, length: Int) -> UnsafeMutableRawPointer? {
        guard address >= Self.base else { return nil }
        let slot = (address - Self.base) >> Self.windowShift
        guard slot < UInt64(Self.slots) else { return nil }
        let offset = address & ((1 << Self.windowShift) - 1)
        let mapped = word(2 * Int(slot) + 1).load(ordering: .acquiring)
        guard offset <= mapped, UInt64(length) <= mapped - offset else { return nil }
        let base = word(2 * Int(slot)).load(ordering: .relaxed)
        // Invariant: [base, base + mapped) is host memory its mapper keeps alive.
        return UnsafeMutableRawPointer(bitPattern: UInt(base + offset))
    }
}
