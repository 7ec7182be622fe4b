import ConcurrencyHelpers

/// The emulation's "physical memory": a DMA-able arena that the host driver
/// allocates queues, PRP lists, data pages and the doorbell buffers from, and
/// that the emulated controller reads and writes by bus address, as a device
/// does over PCIe.
///
/// Bus address `busBase + n` is byte `n` of the arena; anything outside is not
/// memory, and a controller access there is a Data Transfer Error (NVMe Base
/// Specification 2.0, §4.6.1.2.1). Two zones: a first-fit zone for physically
/// contiguous allocations (queues need them: CAP.CQR = 1) and a page zone with a
/// LIFO free list of 4 KiB pages (data buffers and PRP lists; PRPs do not need
/// contiguous pages).
public final class HostMemory: Sendable {
    public static let pageSize = 4096
    /// Bus address of the first byte. Non-zero so that a zero or small PRP is invalid.
    public static let busBase: UInt64 = 0x1_0000_0000

    private let region: MappedRegion
    public let byteCount: Int
    private let contiguousPages: Int
    private let pageZone: Locked<PageZone>
    private let contiguousZone: Locked<[Range<Int>]>  // free page ranges in the contiguous zone

    private struct PageZone {
        var free: [UInt32]  // page indices, LIFO
        var allocated: Int = 0
    }

    /// - Parameters:
    ///   - byteCount: size of the arena (rounded up to pages). Untouched pages cost nothing.
    ///   - contiguousBytes: the part reserved for contiguous allocations.
    public init(byteCount: Int = 1 << 30, contiguousBytes: Int = 32 << 20) throws(MappedRegion.Failure) {
        let pages = (byteCount + Self.pageSize - 1) / Self.pageSize
        let cpages = min(pages, (contiguousBytes + Self.pageSize - 1) / Self.pageSize)
        region = try MappedRegion(byteCount: pages * Self.pageSize)
        self.byteCount = pages * Self.pageSize
        contiguousPages = cpages
        // Hand out low page numbers first: pop from the end.
        pageZone = Locked(PageZone(free: (cpages..<pages).reversed().map { UInt32($0) }))
        contiguousZone = Locked(cpages > 0 ? [0..<cpages] : [])
    }

    // MARK: Allocation (host side)

    /// One 4 KiB page, or `nil` when the page zone is exhausted.
    public func allocatePage() -> UInt64? {
        pageZone.withLock { z in
            guard let p = z.free.popLast() else { return nil }
            z.allocated += 1
            return Self.busBase + UInt64(p) * UInt64(Self.pageSize)
        }
    }

    /// `count` pages (not contiguous), all or none.
    public func allocatePages(_ count: Int, into out: inout [UInt64]) -> Bool {
        pageZone.withLock { z in
            guard z.free.count >= count else { return false }
            for _ in 0..<count {
                out.append(Self.busBase + UInt64(z.free.removeLast()) * UInt64(Self.pageSize))
            }
            z.allocated += count
            return true
        }
    }

    public func freePage(_ address: UInt64) {
        freePages(CollectionOfOne(address))
    }

    public func freePages<C: Collection>(_ addresses: C) where C.Element == UInt64 {
        pageZone.withLock { z in
            for a in addresses {
                precondition(a >= Self.busBase && (a - Self.busBase) % UInt64(Self.pageSize) == 0, "not a page address")
                let index = Int((a - Self.busBase) / UInt64(Self.pageSize))
                precondition(
                    index >= contiguousPages && index < byteCount / Self.pageSize, "page outside the page zone")
                z.free.append(UInt32(index))
            }
            z.allocated -= addresses.count
        }
    }

    /// Pages currently handed out from the page zone.
    public var allocatedPageCount: Int { pageZone.withLock { $0.allocated } }

    /// A physically contiguous, page-aligned, zeroed block of at least `bytes`.
    public func allocateContiguous(bytes: Int) -> UInt64? {
        let n = max(1, (bytes + Self.pageSize - 1) / Self.pageSize)
        let start: Int? = contiguousZone.withLock { ranges in
            guard let i = ranges.firstIndex(where: { $0.count >= n }) else { return nil }
            let r = ranges[i]
            if r.count == n { ranges.remove(at: i) } else { ranges[i] = (r.lowerBound + n)..<r.upperBound }
            return r.lowerBound
        }
        guard let start else { return nil }
        // Invariant: [start, start+n) pages lie inside the mapping (ranges only ever
        // hold sub-ranges of 0..<contiguousPages).
        (region.base + start * Self.pageSize).initializeMemory(as: UInt8.self, repeating: 0, count: n * Self.pageSize)
        return Self.busBase + UInt64(start * Self.pageSize)
    }

    public func freeContiguous(_ address: UInt64, bytes: Int) {
        let n = max(1, (bytes + Self.pageSize - 1) / Self.pageSize)
        let start = Int((address - Self.busBase) / UInt64(Self.pageSize))
        contiguousZone.withLock { ranges in
            ranges.append(start..<(start + n))
            ranges.sort { $0.lowerBound < $1.lowerBound }
            var merged: [Range<Int>] = []
            for r in ranges {
                if let last = merged.last, last.upperBound == r.lowerBound {
                    merged[merged.count - 1] = last.lowerBound..<r.upperBound
                } else {
                    merged.append(r)
                }
            }
            ranges = merged
        }
    }

    // MARK: Access (both sides)

    /// The host pointer for `length` bytes at bus address `address`, or `nil` if any
    /// of them lies outside the arena and outside every DMA mapping. This is the only
    /// way from a bus address to memory.
    @inline(__always)
    public func pointer(at address: UInt64, length: Int) -> UnsafeMutableRawPointer? {
        guard address >= Self.busBase, length >= 0 else { return nil }
        let offset = address &- Self.busBase
        if offset < UInt64(byteCount) {
            guard UInt64(length) <= UInt64(byteCount) &- offset else { return nil }
            // Invariant: offset + length <= byteCount, checked just above.
            return region.base + Int(offset)
        }
        return mappings.pointer(at: address, length: length)
    }

    // MARK: DMA mappings (the IOMMU)

    /// Bus addresses from here on are DMA mappings of host memory outside the arena.
    public static let mappingBase = IOMappings.base

    private let mappings = IOMappings()

    /// Maps `length` bytes of host memory at `pointer` for DMA, as an IOMMU maps
    /// a buffer for a device (Linux `dma_map_single`), so the controller can
    /// transfer straight into or out of it. Returns the bus address of `pointer`
    /// (its page offset is `pointer`'s), or `nil` when every mapping slot is in use.
    ///
    /// The caller keeps the memory alive and unmapped by anyone else until
    /// ``unmapDMA(_:)``, and maps before publishing a command that names it.
    public func mapDMA(_ pointer: UnsafeMutableRawPointer, length: Int) -> UInt64? {
        mappings.map(pointer, length: length)
    }

    /// Ends a mapping made by ``mapDMA(_:length:)`` (after the command completed).
    public func unmapDMA(_ address: UInt64) {
        mappings.unmap(address)
    }

    /// A ``SharedWord`` at `address`, or `nil` if it is outside the arena or misaligned.
    public func word(at address: UInt64) -> SharedWord? {
        guard address & 3 == 0, let p = pointer(at: address, length: 4) else { return nil }
        return SharedWord(p)
    }

    /// Copies bytes out of the arena (test and tool convenience).
    public func read(at address: UInt64, count: Int) -> [UInt8]? {
        guard let p = pointer(at: address, length: count) else { return nil }
        return Array(UnsafeRawBufferPointer(start: p, count: count))
    }

    /// Copies bytes into the arena (test and tool convenience). `false` when outside.
    @discardableResult
    public func write(_ bytes: [UInt8], at address: UInt64) -> Bool {
        guard let p = pointer(at: address, length: bytes.count) else { return false }
        bytes.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        return true
    }
}
