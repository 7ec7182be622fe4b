#if os(Linux)
import CLinuxIO
import Glibc

extension FileBackend {
    /// Walks `lseek(SEEK_DATA)` / `lseek(SEEK_HOLE)` over the range (lseek(2): `ENXIO`
    /// from `SEEK_DATA` means no data at or after the offset, i.e. a hole up to the
    /// end). Block devices, and file systems answering `EINVAL`/`EOPNOTSUPP`, report
    /// the whole range allocated. The result covers the range exactly, in order,
    /// adjacent extents merged. The walk never moves a descriptor's file offset
    /// anything else depends on (all transfers are positioned).
    public func allocationMap(at offset: UInt64, length: UInt64) throws(BackendError) -> [AllocationExtent] {
        try checkRange(offset, length, "allocationMap")
        guard length > 0 else { return [] }
        let end = offset + length
        let allAllocated = [AllocationExtent(offset: offset, length: length, isAllocated: true)]
        guard fileKind == .regularFile, supportsSeekHole.load(ordering: .relaxed) else { return allAllocated }

        var extents: [AllocationExtent] = []
        var position = offset
        while position < end {
            // Offsets are <= byteCount <= Int64.max, so the conversions cannot trap.
            let dataStart = clinux_lseek(buffered.rawValue, Int64(position), clinux_SEEK_DATA)
            if dataStart < 0 {
                switch Int32(-dataStart) {
                case ENXIO:
                    extents.appendMerged(start: position, end: end, isAllocated: false)
                    return extents
                case EINVAL, EOPNOTSUPP:
                    supportsSeekHole.store(false, ordering: .relaxed)
                    return allAllocated
                case let e:
                    throw BackendError(.system(errno: e), operation: "allocationMap", offset: offset, length: length)
                }
            }
            let data = max(UInt64(dataStart), position)
            extents.appendMerged(start: position, end: min(data, end), isAllocated: false)
            if data >= end { break }
            let holeStart = clinux_lseek(buffered.rawValue, Int64(data), clinux_SEEK_HOLE)
            var hole: UInt64
            if holeStart < 0 {
                guard Int32(-holeStart) == ENXIO else {
                    throw BackendError(
                        .system(errno: Int32(-holeStart)), operation: "allocationMap",
                        offset: offset, length: length)
                }
                // The file was shortened between the two calls: the rest is beyond EOF.
                extents.appendMerged(start: data, end: end, isAllocated: false)
                return extents
            }
            hole = UInt64(holeStart)
            if hole <= data {
                // A concurrent hole punch between the two calls; report one granule as
                // data so that the walk always moves forward.
                hole = data + allocationGranularity
            }
            extents.appendMerged(start: data, end: min(hole, end), isAllocated: true)
            position = hole
        }
        return extents
    }
}
#endif
