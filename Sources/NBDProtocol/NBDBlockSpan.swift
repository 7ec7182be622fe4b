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

    /// The whole blocks inside `[offset, offset+length)` — what TRIM, a hint,
    /// deallocates (partial blocks at the edges are left alone, as proto.md
    /// allows) — or `nil` when there are none.
    public static func wholeBlocks(offset: UInt64, length: UInt64, blockShift: Int) -> NBDBlockRange? {
        let shift = UInt64(blockShift)
        let mask = (UInt64(1) << shift) - 1
        let first = (offset + mask) >> shift
        let last = (offset + length) >> shift
        return last > first ? NBDBlockRange(lba: first, blocks: last - first) : nil
    }
}

/// Consecutive logical blocks.
public struct NBDBlockRange: Hashable, Sendable {
    public var lba: UInt64
    public var blocks: UInt64

    public init(lba: UInt64, blocks: UInt64) {
        self.lba = lba
        self.blocks = blocks
    }
}

/// How a WRITE_ZEROES is carried out: NVMe Write Zeroes for the whole blocks
/// in the middle, read-modify-write of zeroes for the partial blocks at the
/// edges (at most two).
public struct NBDZeroingPlan: Hashable, Sendable {
    /// Whole blocks for Write Zeroes.
    public var middle: NBDBlockRange?
    /// Byte ranges inside partial blocks, zeroed by read-modify-write.
    public var edges: [Range<UInt64>]

    public init(offset: UInt64, length: UInt64, blockShift: Int) {
        let mask = (UInt64(1) << UInt64(blockShift)) - 1
        let start = offset, stop = offset + length
        let alignedStart = (start + mask) & ~mask
        let alignedStop = stop & ~mask
        if alignedStart >= alignedStop {
            middle = nil
            edges = length == 0 ? [] : [start..<stop]
        } else {
            middle = NBDBlockRange(
                lba: alignedStart >> UInt64(blockShift), blocks: (alignedStop - alignedStart) >> UInt64(blockShift))
            edges =
                (start < alignedStart ? [start..<alignedStart] : []) + (alignedStop < stop ? [alignedStop..<stop] : [])
        }
    }
}

/// Splits `blocks` blocks from `lba` into pieces of at most `maximum` blocks
/// (CACHE reads them in such chunks through one buffer).
public func nbdChunks(lba: UInt64, blocks: Int, maximum: Int) -> [NBDBlockRange] {
    precondition(maximum > 0)
    var out: [NBDBlockRange] = []
    var at = lba
    var left = blocks
    while left > 0 {
        let n = min(left, maximum)
        out.append(NBDBlockRange(lba: at, blocks: UInt64(n)))
        at += UInt64(n)
        left -= n
    }
    return out
}
