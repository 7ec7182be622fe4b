import DMA

/// The memory one request transfers through, as bus pages: either pages of the
/// ``HostMemory`` arena (a bounce buffer; they need not be contiguous, PRPs do not
/// require it), or a host buffer mapped for DMA with
/// ``HostMemory/mapDMA(_:length:)`` — what Linux's `dma_map_sg` does — so the
/// controller moves data straight into or out of it. Byte 0 sits at
/// ``firstPageOffset`` in `pages[0]`; every page between the first and the last
/// is whole.
///
/// The buffer owns its pages (or its mapping) and gives them back on
/// ``release()`` or when it is freed. It is not synchronised: one request uses it
/// at a time, and the controller only touches it between submission and
/// completion.
public final class DMABuffer: @unchecked Sendable {
    public let memory: HostMemory
    public let byteCount: Int
    public private(set) var pages: [UInt64]
    /// Where byte 0 lies in the first page (0 for arena pages).
    public let firstPageOffset: Int
    /// The bus address of a DMA mapping this buffer ends on release.
    private let mapping: UInt64?
    /// What keeps mapped memory alive until the mapping ends (a byte buffer's
    /// storage); dropped on ``release()``.
    private var owner: AnyObject?

    /// Whether the buffer maps memory the caller owns (the DMA lands there), rather
    /// than pages taken from the host memory's arena.
    public var isMapping: Bool { mapping != nil }

    /// `nil` when the host memory has no `byteCount` bytes of pages left.
    public init?(memory: HostMemory, byteCount: Int) {
        precondition(byteCount >= 0)
        self.memory = memory
        self.byteCount = byteCount
        let n = (byteCount + HostMemory.pageSize - 1) / HostMemory.pageSize
        var pages: [UInt64] = []
        pages.reserveCapacity(n)
        guard memory.allocatePages(n, into: &pages) else { return nil }
        self.pages = pages
        firstPageOffset = 0
        mapping = nil
    }

    /// Maps `byteCount` bytes of host memory at `pointer` for DMA; `nil` when no
    /// mapping slot is free. The memory must stay alive — `owner`, held until
    /// ``release()``, keeps it so — and be left alone by everyone but the device
    /// until the request completed and the buffer is released.
    public init?(memory: HostMemory, mapping pointer: UnsafeMutableRawPointer, byteCount: Int, owner: AnyObject? = nil)
    {
        precondition(byteCount > 0)
        guard let bus = memory.mapDMA(pointer, length: byteCount) else { return nil }
        self.memory = memory
        self.byteCount = byteCount
        self.owner = owner
        mapping = bus
        let offset = Int(bus & UInt64(HostMemory.pageSize - 1))
        firstPageOffset = offset
        let first = bus - UInt64(offset)
        let n = (offset + byteCount + HostMemory.pageSize - 1) / HostMemory.pageSize
        pages = (0..<n).map { first + UInt64($0 * HostMemory.pageSize) }
    }

    deinit { release() }

    /// Returns the pages to the host memory (or ends the mapping). Idempotent.
    public func release() {
        guard !pages.isEmpty else { return }
        if let mapping {
            memory.unmapDMA(mapping)
        } else {
            memory.freePages(pages)
        }
        pages = []
        owner = nil
    }

    /// The pages holding bytes `[offset, offset+count)` and where `offset` lies in
    /// the first of them.
    public func pageRange(offset: Int, count: Int) -> (first: Int, count: Int, offsetInFirst: Int) {
        let start = firstPageOffset + offset
        let first = start / HostMemory.pageSize
        let last = (start + count + HostMemory.pageSize - 1) / HostMemory.pageSize
        return (first, last - first, start % HostMemory.pageSize)
    }

    /// Calls `body` with each page-sized piece of `[offset, offset+count)`.
    @inline(__always)
    public func forEachSegment(
        offset: Int = 0, count: Int? = nil,
        _ body: (UnsafeMutableRawBufferPointer, Int) throws -> Void
    ) rethrows {
        let total = count ?? (byteCount - offset)
        precondition(offset >= 0 && total >= 0 && offset + total <= byteCount, "range outside the DMA buffer")
        var done = 0
        while done < total {
            let position = firstPageOffset + offset + done
            let page = position / HostMemory.pageSize
            let inPage = position % HostMemory.pageSize
            let n = min(HostMemory.pageSize - inPage, total - done)
            // The page is ours and lies in the arena (allocatePages); inPage + n <= pageSize.
            let p = memory.pointer(at: pages[page] + UInt64(inPage), length: n)!
            try body(UnsafeMutableRawBufferPointer(start: p, count: n), done)
            done += n
        }
    }

    /// Copies `source` into the buffer at `offset`.
    public func copyIn(from source: UnsafeRawBufferPointer, at offset: Int = 0) {
        forEachSegment(offset: offset, count: source.count) { segment, done in
            segment.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[done..<(done + segment.count)]))
        }
    }

    /// Writes `count` zero bytes at `offset`.
    public func zero(at offset: Int, count: Int) {
        forEachSegment(offset: offset, count: count) { segment, _ in
            segment.initializeMemory(as: UInt8.self, repeating: 0)
        }
    }

    /// Copies `destination.count` bytes from `offset` out of the buffer.
    public func copyOut(to destination: UnsafeMutableRawBufferPointer, from offset: Int = 0) {
        forEachSegment(offset: offset, count: destination.count) { segment, done in
            UnsafeMutableRawBufferPointer(rebasing: destination[done..<(done + segment.count)])
                .copyMemory(from: UnsafeRawBufferPointer(segment))
        }
    }

    /// The buffer's contents as an array (tests and tools).
    public func bytes(from offset: Int = 0, count: Int? = nil) -> [UInt8] {
        let n = count ?? (byteCount - offset)
        return [UInt8](unsafeUninitializedCapacity: n) { out, initialized in
            copyOut(to: UnsafeMutableRawBufferPointer(out), from: offset)
            initialized = n
        }
    }
}
