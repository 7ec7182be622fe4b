import DMA

/// One queue's ring in DMA memory: `depth` entries of `entrySize` bytes, at the
/// bus address the controller is given (Create I/O Submission/Completion Queue
/// PRP1, or ASQ/ACQ; NVMe Base Specification 2.0, §3.3.1) and mapped for the
/// driver.
struct QueueRing {
    /// The ring's bus address.
    let address: UInt64
    let entrySize: Int
    let byteCount: Int
    private let base: UnsafeMutableRawPointer

    /// Allocates the ring in `memory`; `operation` names the allocation in the error.
    init(memory: HostMemory, depth: Int, entrySize: Int, operation: @autoclosure () -> String) throws(NVMeError) {
        byteCount = depth * entrySize
        guard let address = memory.allocateContiguous(bytes: byteCount) else {
            throw NVMeError(.outOfDMAMemory(bytes: byteCount), operation: operation())
        }
        self.address = address
        self.entrySize = entrySize
        base = memory.pointer(at: address, length: byteCount)!
    }

    /// Gives the ring's memory back to `memory`.
    func free(in memory: HostMemory) { memory.freeContiguous(address, bytes: byteCount) }

    /// The first byte of entry `index` (which must be below the depth).
    func entry(_ index: Int) -> UnsafeMutableRawPointer { base + index * entrySize }

    /// Zeroes every entry.
    func zero() { base.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount) }
}
