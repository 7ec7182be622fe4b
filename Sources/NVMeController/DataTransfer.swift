import DMA
import NVMe

extension ControllerCore {
    /// Maps a command's data pointer for `length` bytes into ``segments``.
    @inline(__always)
    func mapData(_ entry: SubmissionQueueEntry, length: Int) -> NVMeStatus? {
        segments.removeAll(keepingCapacity: true)
        return PRPWalker.map(prp1: entry.prp1, prp2: entry.prp2, length: length, memory: memory, into: &segments)
    }

    /// Copies `bytes` to the host buffer the command names (controller-to-host data).
    func copyToHost(_ bytes: UnsafeRawBufferPointer, _ entry: SubmissionQueueEntry) -> NVMeStatus? {
        if let s = mapData(entry, length: bytes.count) { return s }
        var done = 0
        for seg in segments {
            // Each segment is `length` bytes inside the arena (checked by the walker).
            seg.pointer.copyMemory(from: bytes.baseAddress! + done, byteCount: seg.length)
            done += seg.length
        }
        return nil
    }

    func copyToHost(_ bytes: [UInt8], _ entry: SubmissionQueueEntry) -> NVMeStatus? {
        bytes.withUnsafeBytes { copyToHost($0, entry) }
    }

    /// Copies `count` bytes from the host buffer the command names.
    func copyFromHost(count: Int, _ entry: SubmissionQueueEntry) -> [UInt8]? {
        guard mapData(entry, length: count) == nil else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(count)
        for seg in segments {
            out.append(contentsOf: UnsafeRawBufferPointer(start: seg.pointer, count: seg.length))
        }
        return out
    }
}
