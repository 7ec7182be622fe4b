import DMA
import NIOCore
import NVMeHost

// DMA to and from SwiftNIO byte buffers: the one place pointers into a
// `ByteBuffer` leave a closure (swift-nio's rule: only with the storage
// retained, through the `…WithStorageManagement` accessors).
//
// Invariant of every mapping made here: the `DMABuffer` holds a strong
// reference to the byte buffer's storage until it is released, so the memory
// cannot be freed; and because that reference makes the storage not uniquely
// referenced, any write through any `ByteBuffer` sharing it copies the storage
// first (copy-on-write) — the mapped bytes never move and are never written by
// the host while the device may access them. Callers release the DMA buffer
// before they read bytes the device wrote (the completion orders the device's
// writes before it).

extension DMABuffer {
    /// Maps the readable bytes of `payload` for the device to read (a write's
    /// data, where it lies in the receive buffer). `nil` when the bytes are not
    /// dword aligned (PRP entries must be, NVMe 1.4 §4.3) or no mapping slot is
    /// free; then copy them into arena pages with ``copyIn(_:at:)``.
    public static func mapping(readableBytesOf payload: ByteBuffer, memory: HostMemory) -> DMABuffer? {
        guard payload.readableBytes > 0 else { return nil }
        return payload.withUnsafeReadableBytesWithStorageManagement { bytes, storage in
            guard let base = bytes.baseAddress, Int(bitPattern: base) & 3 == 0 else { return nil }
            // The device only reads through this mapping (a write command's data).
            return DMABuffer(
                memory: memory, mapping: UnsafeMutableRawPointer(mutating: base), byteCount: bytes.count,
                owner: storage.takeUnretainedValue())
        }
    }

    /// Maps `count` bytes of `buffer`'s free space, right after its writer
    /// index, for the device to fill (a read reply's data). `nil` when no
    /// mapping slot is free. Once the command completed and the DMA buffer is
    /// released, `moveWriterIndex(forwardBy: count)` makes the bytes readable.
    public static func mapping(writableSpaceOf buffer: inout ByteBuffer, count: Int, memory: HostMemory) -> DMABuffer? {
        precondition(count > 0)
        buffer.reserveCapacity(minimumWritableBytes: count)
        let start = buffer.writerIndex
        // A unique storage from here on (the mutable accessor copies a shared one);
        // the storage reference taken next is the same object.
        let base = buffer.withVeryUnsafeMutableBytes { all in all.baseAddress! + start }
        return buffer.withVeryUnsafeBytesWithStorageManagement { _, storage in
            DMABuffer(memory: memory, mapping: base, byteCount: count, owner: storage.takeUnretainedValue())
        }
    }

    /// Copies the readable bytes of `bytes` into the buffer at `offset`.
    public func copyIn(_ bytes: ByteBuffer, at offset: Int = 0) {
        bytes.withUnsafeReadableBytes { copyIn(from: $0, at: offset) }
    }
}

extension ByteBuffer {
    /// Appends `count` bytes of `dma` from `offset` (a bounced read's data).
    public mutating func writeBytes(from dma: DMABuffer, offset: Int = 0, count: Int) {
        writeWithUnsafeMutableBytes(minimumWritableBytes: count) { out in
            dma.copyOut(to: UnsafeMutableRawBufferPointer(rebasing: out[0..<count]), from: offset)
            return count
        }
    }
}
