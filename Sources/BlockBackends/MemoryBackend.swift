import Synchronization

#if canImport(Glibc)
import ConcurrencyHelpers
import DMA
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A sparse, volatile namespace held in process memory.
///
/// Storage is allocated in 4 KiB pages on the first write that touches them, so a
/// multi-TiB namespace costs memory only for what has been written. Pages are found
/// through a two-level table (a top array of lazily allocated chunks of 512 page
/// pointers), so a lookup is two loads whatever the namespace size.
///
/// Zeroing policy: this backend never keeps pages of zeroes. ``deallocate(at:length:)``
/// and ``writeZeroes(at:length:deallocate:)`` — with or without `deallocate` — free every
/// page the range covers completely and zero the covered bytes of the partial pages
/// at its edges. Freed pages are reported as holes by ``allocationMap(at:length:)``.
/// (Keeping zeroed pages allocated would make a Write Zeroes of a large range cost
/// that much memory.)
///
/// Thread safety: one `Mutex` guards the page table. An aligned 4 KiB read or write is
/// a range check, the lock, two loads and one `memcpy`, with no heap allocation
/// except the page itself on the first write to it.
///
/// Namespaces may be up to 256 TiB; the top-level table is `calloc`ed, so the
/// untouched parts of it cost address space but no resident memory.
public final class MemoryBackend: BlockBackend {
    /// Largest namespace accepted: 2^48 bytes (256 TiB). Its top-level table is 1 GiB
    /// of (untouched, hence non-resident) address space.
    public static let maximumByteCount: UInt64 = 1 << 48

    public let byteCount: UInt64
    public let isReadOnly: Bool
    /// Always `false`: a completed write is as durable as this backend gets.
    public var hasVolatileWriteCache: Bool { false }

    private let table: Locked<PageTable>

    /// Creates a namespace of `byteCount` bytes that reads as zeroes.
    ///
    /// - Throws: ``BackendError/Kind/invalidConfiguration(_:)`` unless `byteCount` is a
    ///   positive multiple of 512 no larger than ``maximumByteCount``;
    ///   ``BackendError/Kind/system(errno:)`` (`ENOMEM`) if the page table cannot be
    ///   reserved.
    public init(byteCount: UInt64, readOnly: Bool = false) throws(BackendError) {
        guard byteCount > 0, byteCount % 512 == 0 else {
            throw BackendError(
                .invalidConfiguration("memory namespace size \(byteCount) is not a positive multiple of 512 bytes"),
                operation: "create", length: byteCount)
        }
        guard byteCount <= Self.maximumByteCount else {
            throw BackendError(
                .invalidConfiguration(
                    "memory namespace size \(byteCount) exceeds the maximum of \(Self.maximumByteCount) bytes"),
                operation: "create", length: byteCount)
        }
        guard let table = PageTable(pageCount: Int((byteCount + backendBlockSize - 1) / backendBlockSize)) else {
            throw BackendError(.system(errno: ENOMEM), operation: "create", length: byteCount)
        }
        self.byteCount = byteCount
        self.isReadOnly = readOnly
        self.table = Locked(table)
    }

    /// Bytes of page storage currently allocated (resident pages × 4096). The page
    /// table itself is not counted.
    public var allocatedByteCount: UInt64 {
        table.withLock { UInt64($0.residentPages) * backendBlockSize }
    }

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(BackendError) {
        try checkRange(offset, UInt64(buffer.count), "read")
        table.withLock { table in
            forEachPageSpan(offset: offset, count: buffer.count) { page, inPage, bufferOffset, n in
                let destination = UnsafeMutableRawBufferPointer(rebasing: buffer[bufferOffset..<bufferOffset + n])
                if let source = table.page(page) {
                    // `source` is a live 4096-byte page owned by the table (we hold the
                    // lock, so it cannot be freed) and inPage + n <= 4096.
                    destination.copyMemory(from: UnsafeRawBufferPointer(start: source + inPage, count: n))
                } else {
                    destination.initializeMemory(as: UInt8.self, repeating: 0)
                }
            }
        }
    }

    /// Writes `buffer`. `forceUnitAccess` changes nothing: there is no cache to bypass.
    public func write(at offset: UInt64, from buffer: UnsafeRawBufferPointer, forceUnitAccess: Bool)
        throws(BackendError)
    {
        try checkWritable(offset, UInt64(buffer.count), "write")
        try table.withLock { (table) throws(BackendError) in
            try forEachPageSpan(offset: offset, count: buffer.count) {
                (page, inPage, bufferOffset, n) throws(BackendError) in
                guard let destination = table.materialize(page, zeroFilled: n != PageTable.pageSize) else {
                    throw BackendError(
                        .system(errno: ENOMEM), operation: "write",
                        offset: offset, length: UInt64(buffer.count))
                }
                // `destination` is a live 4096-byte page owned by the table and
                // inPage + n <= 4096; `buffer` cannot overlap it (pages are private).
                UnsafeMutableRawBufferPointer(start: destination + inPage, count: n)
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: buffer[bufferOffset..<bufferOffset + n]))
            }
        }
    }

    /// Does nothing: writes are complete when ``write(at:from:forceUnitAccess:)`` returns.
    public func flush() throws(BackendError) {}

    /// Frees every page the range covers completely and zeroes the covered bytes of
    /// the partial pages at its edges.
    public func deallocate(at offset: UInt64, length: UInt64) throws(BackendError) {
        try checkWritable(offset, length, "deallocate")
        zeroRange(offset: offset, length: length)
    }

    /// Same as ``deallocate(at:length:)`` whatever `deallocate` says: this backend keeps
    /// no pages of zeroes, so the fully covered pages become holes in
    /// ``allocationMap(at:length:)`` either way.
    public func writeZeroes(at offset: UInt64, length: UInt64, deallocate: Bool) throws(BackendError) {
        try checkWritable(offset, length, "writeZeroes")
        zeroRange(offset: offset, length: length)
    }

    /// Extents at 4 KiB page granularity, clipped to the requested range.
    public func allocationMap(at offset: UInt64, length: UInt64) throws(BackendError) -> [AllocationExtent] {
        try checkRange(offset, length, "allocationMap")
        guard length > 0 else { return [] }
        let end = offset + length
        let endPage = Int((end + backendBlockSize - 1) / backendBlockSize)
        return table.withLock { table in
            var extents: [AllocationExtent] = []
            var page = Int(offset / backendBlockSize)
            while page < endPage {
                let allocated = table.page(page) != nil
                let runEnd = table.endOfRun(from: page, limit: endPage, allocated: allocated)
                extents.appendMerged(
                    start: max(UInt64(page) * backendBlockSize, offset),
                    end: min(UInt64(runEnd) * backendBlockSize, end),
                    isAllocated: allocated)
                page = runEnd
            }
            return extents
        }
    }

    private func zeroRange(offset: UInt64, length: UInt64) {
        table.withLock { table in
            forEachPageSpan(offset: offset, count: Int(length)) { page, inPage, _, n in
                if n == PageTable.pageSize {
                    table.makeHole(page)
                } else if let target = table.page(page) {
                    // Live 4096-byte page owned by the table; inPage + n <= 4096.
                    UnsafeMutableRawBufferPointer(start: target + inPage, count: n)
                        .initializeMemory(as: UInt8.self, repeating: 0)
                }
            }
        }
    }
}

/// Splits `[offset, offset+count)` at page boundaries and calls `body` with
/// (page index, offset inside the page, offset from the start of the range, length).
@inline(__always)
private func forEachPageSpan<E: Error>(
    offset: UInt64, count: Int, _ body: (Int, Int, Int, Int) throws(E) -> Void
) throws(E) {
    var done = 0
    while done < count {
        let position = offset + UInt64(done)
        let page = Int(position / backendBlockSize)
        let inPage = Int(position % backendBlockSize)
        let n = min(PageTable.pageSize - inPage, count - done)
        try body(page, inPage, done, n)
        done += n
    }
}

/// The two-level sparse page table behind ``MemoryBackend``. Only ever accessed
/// through the backend's `Mutex`, so it needs no synchronisation of its own
/// (hence `@unchecked Sendable`: the mutex is what makes moving it between threads safe).
///
/// Invariants (all the unsafe pointer code of the memory backend relies on these):
/// - `chunks` points to `chunkCount` slots, zero-filled by `calloc` (a zero bit
///   pattern is `nil` for an optional pointer). Each slot is `nil` or points to a
///   `calloc`ed array of `pagesPerChunk` page slots owned by this table.
/// - Each page slot is `nil` or points to a `malloc`ed 4096-byte page owned by this
///   table; nothing else frees or retains it.
/// - `residentCounts[c]` is the number of non-nil page slots in chunk `c`; a chunk
///   whose count drops to zero is freed and its slot set back to `nil`.
/// - Callers pass page indices below `pageCount` (the backend range-checks first).
/// A final class rather than a `~Copyable` struct: Swift 6.3's ThreadSanitizer
/// instrumentation of mutating methods on a noncopyable struct with pointer
/// fields produced invalid IR (an `i64` bit-cast to a pointer) and crashed the
/// compiler, which kept `swift test --sanitize=thread` from building.
final class PageTable: @unchecked Sendable {
    static let pageSize = Int(backendBlockSize)
    static let pagesPerChunk = 512
    typealias Chunk = UnsafeMutablePointer<UnsafeMutableRawPointer?>

    let pageCount: Int
    private let chunkCount: Int
    private let chunks: UnsafeMutablePointer<Chunk?>
    private let residentCounts: UnsafeMutablePointer<UInt16>
    private(set) var residentPages = 0

    /// Returns `nil` if the top-level arrays cannot be allocated.
    init?(pageCount: Int) {
        let chunkCount = (pageCount + Self.pagesPerChunk - 1) / Self.pagesPerChunk
        guard let rawChunks = calloc(chunkCount, MemoryLayout<Chunk?>.stride) else { return nil }
        guard let rawCounts = calloc(chunkCount, MemoryLayout<UInt16>.stride) else {
            free(rawChunks)
            return nil
        }
        self.pageCount = pageCount
        self.chunkCount = chunkCount
        // calloc memory is zeroed, which is a valid (nil / 0) value of both element types.
        self.chunks = rawChunks.bindMemory(to: Chunk?.self, capacity: chunkCount)
        self.residentCounts = rawCounts.bindMemory(to: UInt16.self, capacity: chunkCount)
    }

    deinit {
        for c in 0..<chunkCount {
            guard let chunk = chunks[c] else { continue }
            for p in 0..<Self.pagesPerChunk {
                free(chunk[p])
            }
            free(chunk)
        }
        free(chunks)
        free(residentCounts)
    }

    /// The page's storage, or `nil` for a hole.
    @inline(__always)
    func page(_ index: Int) -> UnsafeMutableRawPointer? {
        assert(index >= 0 && index < pageCount)
        guard let chunk = chunks[index / Self.pagesPerChunk] else { return nil }
        return chunk[index % Self.pagesPerChunk]
    }

    /// The page's storage, allocating it (and its chunk) if it is a hole. A new page
    /// is zero-filled when `zeroFilled` is set (the caller will not overwrite all of
    /// it). Returns `nil` when out of memory.
    @inline(__always)
    func materialize(_ index: Int, zeroFilled: Bool) -> UnsafeMutableRawPointer? {
        assert(index >= 0 && index < pageCount)
        let c = index / Self.pagesPerChunk
        let p = index % Self.pagesPerChunk
        let chunk: Chunk
        if let existing = chunks[c] {
            if let page = existing[p] { return page }
            chunk = existing
        } else {
            guard let raw = calloc(Self.pagesPerChunk, MemoryLayout<UnsafeMutableRawPointer?>.stride) else {
                return nil
            }
            chunk = raw.bindMemory(to: UnsafeMutableRawPointer?.self, capacity: Self.pagesPerChunk)
            chunks[c] = chunk
        }
        guard let page = zeroFilled ? calloc(1, Self.pageSize) : malloc(Self.pageSize) else {
            if residentCounts[c] == 0 { releaseChunk(c) }
            return nil
        }
        chunk[p] = page
        residentCounts[c] += 1
        residentPages += 1
        return page
    }

    /// Makes the page a hole, releasing its storage (and its chunk once empty).
    @inline(__always)
    func makeHole(_ index: Int) {
        assert(index >= 0 && index < pageCount)
        let c = index / Self.pagesPerChunk
        guard let chunk = chunks[c], let page = chunk[index % Self.pagesPerChunk] else { return }
        free(page)
        chunk[index % Self.pagesPerChunk] = nil
        residentCounts[c] -= 1
        residentPages -= 1
        if residentCounts[c] == 0 { releaseChunk(c) }
    }

    /// The first page at or after `start` (and below `limit`) whose state differs from
    /// `allocated`, or `limit`. Skips whole chunks that are empty or full.
    func endOfRun(from start: Int, limit: Int, allocated: Bool) -> Int {
        var index = start
        while index < limit {
            let c = index / Self.pagesPerChunk
            let count = Int(residentCounts[c])
            if (allocated && count == Self.pagesPerChunk) || (!allocated && count == 0) {
                index = (c + 1) * Self.pagesPerChunk
                continue
            }
            if (page(index) != nil) != allocated { return index }
            index += 1
        }
        return limit
    }

    private func releaseChunk(_ c: Int) {
        free(chunks[c])
        chunks[c] = nil
    }
}
