/// Block granularity shared by both backends: namespace sizes are multiples of it
/// and ``MemoryBackend`` allocates storage in units of it.
@usableFromInline
let backendBlockSize: UInt64 = 4096

extension BlockBackend {
    /// Throws ``BackendError/Kind/outOfRange`` unless `[offset, offset+length)` lies
    /// inside the namespace. Written so that `offset + length` cannot overflow.
    @inline(__always)
    func checkRange(_ offset: UInt64, _ length: UInt64, _ operation: String) throws(BackendError) {
        guard offset <= byteCount, length <= byteCount - offset else {
            throw BackendError(.outOfRange, operation: operation, offset: offset, length: length)
        }
    }

    /// Range check plus the read-only check every mutating operation needs.
    @inline(__always)
    func checkWritable(_ offset: UInt64, _ length: UInt64, _ operation: String) throws(BackendError) {
        guard !isReadOnly else {
            throw BackendError(.readOnly, operation: operation, offset: offset, length: length)
        }
        try checkRange(offset, length, operation)
    }
}

extension Array where Element == AllocationExtent {
    /// Appends `[start, end)` with the given state, merging with the last extent when
    /// it has the same state and is adjacent. Empty ranges are dropped.
    mutating func appendMerged(start: UInt64, end: UInt64, isAllocated: Bool) {
        guard end > start else { return }
        if let last = self.last, last.isAllocated == isAllocated, last.range.upperBound == start {
            self[count - 1].range = last.offset..<end
        } else {
            append(AllocationExtent(offset: start, length: end - start, isAllocated: isAllocated))
        }
    }
}
