import DMA
import NVMe

/// One contiguous piece of host memory a command's data occupies.
struct DMASegment {
    var pointer: UnsafeMutableRawPointer
    var length: Int
}

/// Turns a command's PRP1/PRP2 into the host memory it names (NVMe Base
/// Specification 2.0, §4.1.1 "Physical Region Page Entry and List"), the way
/// QEMU's `nvme_map_prp` does:
///
/// - PRP1 may carry an offset (dword aligned) and covers up to the end of its page;
/// - if the rest fits in one page, PRP2 is that page (offset must be 0);
/// - otherwise PRP2 points to a PRP list (qword aligned, may start inside a page);
///   each list page holds entries to its end, and when more entries are needed
///   than a list page has left, its last entry points to the next list page;
/// - every data entry after the first and every list-chain pointer is page aligned,
///   else **Invalid PRP Offset**; memory outside the host arena is a **Data
///   Transfer Error**. Nothing here can trap or loop without bound: the walk is
///   limited by the transfer length.
enum PRPWalker {
    static let pageSize = HostMemory.pageSize

    /// Appends the segments for `length` bytes to `segments` (adjacent pieces
    /// merged). Returns the failure status, or `nil` on success.
    static func map(
        prp1: UInt64, prp2: UInt64, length: Int, memory: HostMemory,
        into segments: inout [DMASegment]
    ) -> NVMeStatus? {
        guard length > 0 else { return nil }
        guard prp1 & 3 == 0 else { return .invalidPRPOffset }
        let first = min(length, pageSize - Int(prp1 % UInt64(pageSize)))
        if let s = add(prp1, first, memory, &segments) { return s }
        var remaining = length - first
        if remaining == 0 { return nil }
        if remaining <= pageSize {
            guard prp2 % UInt64(pageSize) == 0 else { return .invalidPRPOffset }
            return add(prp2, remaining, memory, &segments)
        }
        // PRP2 is a list pointer.
        guard prp2 & 7 == 0 else { return .invalidPRPOffset }
        var listAddress = prp2
        while remaining > 0 {
            let entriesInPage = (pageSize - Int(listAddress % UInt64(pageSize))) / 8
            guard let list = memory.pointer(at: listAddress, length: entriesInPage * 8) else {
                return .dataTransferError
            }
            var next: UInt64? = nil
            for i in 0..<entriesInPage {
                let entry = UInt64(littleEndian: list.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))
                let pagesLeft = (remaining + pageSize - 1) / pageSize
                if i == entriesInPage - 1 && pagesLeft > 1 {
                    // The last entry of a list page chains to the next list page.
                    guard entry % UInt64(pageSize) == 0 else { return .invalidPRPOffset }
                    next = entry
                    break
                }
                guard entry % UInt64(pageSize) == 0 else { return .invalidPRPOffset }
                let n = min(remaining, pageSize)
                if let s = add(entry, n, memory, &segments) { return s }
                remaining -= n
                if remaining == 0 { break }
            }
            guard remaining > 0 else { break }
            guard let n = next else { return .invalidField }
            listAddress = n
        }
        return nil
    }

    private static func add(
        _ address: UInt64, _ length: Int, _ memory: HostMemory,
        _ segments: inout [DMASegment]
    ) -> NVMeStatus? {
        guard let p = memory.pointer(at: address, length: length) else { return .dataTransferError }
        if let last = segments.last, last.pointer + last.length == p {
            segments[segments.count - 1].length += length
        } else {
            segments.append(DMASegment(pointer: p, length: length))
        }
        return nil
    }
}
