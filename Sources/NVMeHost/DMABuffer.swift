import DMA

/// Data pages in ``HostMemory`` that one request transfers through: what the
/// Linux driver would map with `dma_map_sg`. The pages need not be contiguous
/// (PRPs do not require it); every page but the last is full.
///
/// The buffer owns its pages and gives them back on ``release()`` or when it is
/// freed. It is not synchronised: one request uses it at a time, and the
/// controller only touches it between submission and completion.
public final class DMABuffer: @unchecked Sendable {
    public let memory: HostMemory
    public let byteCount: Int
    public private(set) var pages: [UInt64]

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
    }

    deinit { release() }

    /// Returns the pages to the host memory. Idempotent.
    public func release() {
        guard !pages.isEmpty else { return }
        memory.freePages(pages)
        pages = []
    }

    /// Calls `body` with each page-sized piece of `[offset, offset+count)`.
    @inline(__always)
    public func forEachSegment(offset: Int = 0, count: Int? = nil,
                               _ body: (UnsafeMutableRawBufferPointer, Int) throws -> Void) rethrows {
        let total = count ?? (byteCount - offset)
        precondition(offset >= 0 && total >= 0 && offset + total <= byteCount, "range outside the DMA buffer")
        var done = 0
        while done < total {
            let position = offset + done
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
