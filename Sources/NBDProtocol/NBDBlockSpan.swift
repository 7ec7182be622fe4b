/// A byte range of an export as whole logical blocks of the namespace behind
/// it: what an NBD request becomes in NVMe terms. Pure arithmetic.
public struct NBDBlockSpan: Hashable, Sendable {
    /// The first block.
    public var lba: UInt64
    /// Blocks covered (partial ones at the edges included).
    public var blocks: Int
    /// Bytes from the span's start to the range's start.
    public var head: Int
    /// `blocks` in bytes.
    public var bytes: Int
    /// Whether the range starts and ends on block boundaries.
    public var aligned: Bool

    /// The blocks covering `[offset, offset+length)` with blocks of `1 << blockShift` bytes.
    public init(offset: UInt64, length: UInt64, blockShift: Int) {
        let shift = UInt64(blockShift)
        let mask = (UInt64(1) << shift) - 1
        let first = offset >> shift
        let last = (offset + length + mask) >> shift
        lba = first
        blocks = Int(last - first)
        head = Int(offset & mask)
        bytes = blocks << blockShift
        aligned = offset & mask == 0 && length & mask == 0
    }

    /// The LBAs of the whole blocks inside `[offset, offset+length)` — what TRIM,
    /// a hint, deallocates (partial blocks at the edges are left alone, as
    /// proto.md allows) — or `nil` when there are none.
    public static func wholeBlocks(offset: UInt64, length: UInt64, blockShift: Int) -> Range<UInt64>? {
        let shift = UInt64(blockShift)
        let mask = (UInt64(1) << shift) - 1
        let first = (offset + mask) >> shift
        let last = (offset + length) >> shift
        return last > first ? first..<last : nil
    }
}

/// How a WRITE_ZEROES is carried out: NVMe Write Zeroes for the whole blocks
/// in the middle, read-modify-write of zeroes for the partial blocks at the
/// edges (at most two).
public struct NBDZeroingPlan: Hashable, Sendable {
    /// The LBAs of the whole blocks, for Write Zeroes (``NBDBlockSpan/wholeBlocks(offset:length:blockShift:)``).
    public var middle: Range<UInt64>?
    /// Byte ranges inside partial blocks, zeroed by read-modify-write.
    public var edges: [Range<UInt64>]

    public init(offset: UInt64, length: UInt64, blockShift: Int) {
        let start = offset, stop = offset + length
        let whole = NBDBlockSpan.wholeBlocks(offset: offset, length: length, blockShift: blockShift)
        middle = whole
        guard let whole else {
            edges = length == 0 ? [] : [start..<stop]
            return
        }
        let alignedStart = whole.lowerBound << UInt64(blockShift)
        let alignedStop = whole.upperBound << UInt64(blockShift)
        edges = (start < alignedStart ? [start..<alignedStart] : []) + (alignedStop < stop ? [alignedStop..<stop] : [])
    }
}

/// Splits `blocks` blocks from `lba` into LBA ranges of at most `maximum` blocks
/// (CACHE reads them in such chunks through one buffer).
public func nbdChunks(lba: UInt64, blocks: Int, maximum: Int) -> [Range<UInt64>] {
    precondition(maximum > 0)
    var out: [Range<UInt64>] = []
    var at = lba
    var left = blocks
    while left > 0 {
        let n = min(left, maximum)
        out.append(at..<at + UInt64(n))
        at += UInt64(n)
        left -= n
    }
    return out
}
