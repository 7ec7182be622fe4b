/// A run of an export's bytes with one allocation state, in bytes: what the
/// server learns from the namespace's allocation map, independent of NVMe.
public struct NBDExtent: Hashable, Sendable {
    /// The bytes, `[offset, offset + length)`.
    public var range: Range<UInt64>
    /// Deallocated: reads as zeroes.
    public var isHole: Bool

    public init(_ range: Range<UInt64>, isHole: Bool) {
        self.range = range
        self.isHole = isHole
    }

    public var offset: UInt64 { range.lowerBound }
    public var length: UInt64 { range.upperBound - range.lowerBound }
}

/// Pure functions from extents to what the replies carry.
public enum NBDExtents {
    /// A structured read's pieces: the request's range as data and hole runs
    /// following `extents`, adjacent runs of one kind merged, covering exactly
    /// `[offset, offset+length)`; what the extents do not cover is data.
    public static func readRuns(offset: UInt64, length: UInt64, extents: [NBDExtent]) -> [NBDExtent] {
        let start = offset, end = offset + length
        var runs: [NBDExtent] = []
        func add(_ a: UInt64, _ b: UInt64, _ hole: Bool) {
            let lo = max(a, start), hi = min(b, end)
            guard hi > lo else { return }
            if let last = runs.last, last.isHole == hole, last.range.upperBound == lo {
                runs[runs.count - 1].range = last.offset..<hi
            } else {
                runs.append(NBDExtent(lo..<hi, isHole: hole))
            }
        }
        var covered = start
        for x in extents {
            if x.offset > covered { add(covered, x.offset, false) }
            add(x.offset, x.range.upperBound, x.isHole)
            covered = max(covered, x.range.upperBound)
        }
        if covered < end { add(covered, end, false) }
        return runs
    }

    /// The descriptors of an `NBD_REPLY_TYPE_BLOCK_STATUS` chunk for a request at
    /// `offset` of `length` bytes (proto.md "NBD_CMD_BLOCK_STATUS"): from the
    /// request's offset, never past `exportSize`, each at most 4 GiB − 1 rounded
    /// down to `granularity` (a power of two), equal states merged; with
    /// `requestOne` one descriptor no longer than the request. Empty when the
    /// extents say nothing about the offset.
    public static func blockStatus(
        offset: UInt64, length: UInt32, extents: [NBDExtent], exportSize: UInt64,
        granularity: UInt64, requestOne: Bool
    ) -> [NBDBlockStatusDescriptor] {
        var out: [NBDBlockStatusDescriptor] = []
        var position = offset
        let maxLength = UInt64(UInt32.max) & ~(granularity - 1)
        for x in extents {
            let a = max(x.offset, position)
            let b = min(x.range.upperBound, exportSize)
            guard b > a else { continue }
            let state: NBDAllocationState = x.isHole ? [.hole, .zero] : []
            let n = min(b - a, maxLength)
            if let last = out.last, last.flags == state.rawValue, UInt64(last.length) + n <= maxLength {
                out[out.count - 1].length += UInt32(n)
            } else {
                out.append(NBDBlockStatusDescriptor(length: UInt32(n), state: state))
            }
            position = a + n
            if n < b - a { break }
            if requestOne && !out.isEmpty { break }
        }
        if requestOne, !out.isEmpty {
            // "MUST NOT be greater than the length of the request": the descriptor
            // starts at the request's offset, so clipping to its length suffices.
            out = [out[0]]
            out[0].length = UInt32(min(UInt64(out[0].length), UInt64(length)))
        }
        return out
    }
}
