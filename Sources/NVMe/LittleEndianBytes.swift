/// Little-endian fields of the data structures the controller and host
/// exchange (NVMe Base Specification 2.0, §1.5: multi-byte values are little
/// endian unless a field says otherwise).
extension [UInt8] {
    /// Stores the low `width` bytes of `v` at `o`, least significant first.
    public mutating func putLittleEndian(_ v: UInt64, at o: Int, width: Int) {
        for i in 0..<width { self[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
    }
    /// The `width`-byte little-endian integer at `o`.
    public func littleEndian(at o: Int, width: Int) -> UInt64 {
        (0..<width).reduce(0) { $0 | UInt64(self[o + $1]) << (8 * UInt64($1)) }
    }
    public mutating func put16(_ v: UInt16, at o: Int) { putLittleEndian(UInt64(v), at: o, width: 2) }
    public mutating func put32(_ v: UInt32, at o: Int) { putLittleEndian(UInt64(v), at: o, width: 4) }
    public mutating func put64(_ v: UInt64, at o: Int) { putLittleEndian(v, at: o, width: 8) }
    public func get16(_ o: Int) -> UInt16 { UInt16(truncatingIfNeeded: littleEndian(at: o, width: 2)) }
    public func get32(_ o: Int) -> UInt32 { UInt32(truncatingIfNeeded: littleEndian(at: o, width: 4)) }
    public func get64(_ o: Int) -> UInt64 { littleEndian(at: o, width: 8) }
}
