import NVMe

/// `async` forms of the block requests, for callers in Swift concurrency. Data is
/// staged through a ``DMABuffer`` taken from the host memory per request.
extension QueuePair {
    /// Reads `blocks` blocks at `lba` into `destination` (at least that many bytes).
    public func read(
        namespace nsid: UInt32 = 1, lba: UInt64, blocks: Int,
        into destination: UnsafeMutableRawBufferPointer
    ) async throws(NVMeError) {
        let bytes = try byteCount(nsid, blocks, destination.count, "Read")
        let buffer = try stagingBuffer(bytes, "Read")
        try await result { transfer(.read(into: buffer), namespace: nsid, lba: lba, blocks: blocks, completion: $0) }
        buffer.copyOut(to: UnsafeMutableRawBufferPointer(rebasing: destination[0..<bytes]))
    }

    /// Reads `blocks` blocks at `lba` and returns them.
    public func read(namespace nsid: UInt32 = 1, lba: UInt64, blocks: Int) async throws(NVMeError) -> [UInt8] {
        let bytes = try byteCount(nsid, blocks, Int.max, "Read")
        let buffer = try stagingBuffer(bytes, "Read")
        try await result { transfer(.read(into: buffer), namespace: nsid, lba: lba, blocks: blocks, completion: $0) }
        return buffer.bytes()
    }

    /// Writes `blocks` blocks at `lba` from `source` (at least that many bytes).
    public func write(
        namespace nsid: UInt32 = 1, lba: UInt64, blocks: Int, from source: UnsafeRawBufferPointer,
        fua: Bool = false
    ) async throws(NVMeError) {
        let bytes = try byteCount(nsid, blocks, source.count, "Write")
        let buffer = try stagingBuffer(bytes, "Write")
        buffer.copyIn(from: UnsafeRawBufferPointer(rebasing: source[0..<bytes]))
        try await result {
            transfer(.write(from: buffer), namespace: nsid, lba: lba, blocks: blocks, fua: fua, completion: $0)
        }
    }

    public func write(namespace nsid: UInt32 = 1, lba: UInt64, _ data: [UInt8], fua: Bool = false)
        async throws(NVMeError)
    {
        let blockSize = try info(nsid, "Write").blockSize
        guard data.count % blockSize == 0 else {
            throw NVMeError(
                .invalidRequest("\(data.count) bytes is not a whole number of \(blockSize)-byte blocks"),
                operation: "Write")
        }
        let buffer = try stagingBuffer(data.count, "Write")
        data.withUnsafeBytes { buffer.copyIn(from: $0) }
        try await result {
            transfer(
                .write(from: buffer), namespace: nsid, lba: lba, blocks: data.count / blockSize, fua: fua,
                completion: $0)
        }
    }

    public func flush(namespace nsid: UInt32 = 1) async throws(NVMeError) {
        try await result { flush(namespace: nsid, completion: $0) }
    }

    public func writeZeroes(
        namespace nsid: UInt32 = 1, lba: UInt64, blocks: UInt64, deallocate: Bool,
        fua: Bool = false, fastOnly: Bool = false
    ) async throws(NVMeError) {
        try await result {
            writeZeroes(
                namespace: nsid, lba: lba, blocks: blocks, deallocate: deallocate, fua: fua, fastOnly: fastOnly,
                completion: $0)
        }
    }

    public func deallocate(namespace nsid: UInt32 = 1, ranges: [(lba: UInt64, blocks: UInt64)]) async throws(NVMeError)
    {
        try await result { deallocate(namespace: nsid, ranges: ranges, completion: $0) }
    }

    /// The allocation state of `[lba, lba+blocks)`, asking as many times as needed.
    public func allocationMap(namespace nsid: UInt32 = 1, lba: UInt64, blocks: UInt64) async throws(NVMeError)
        -> [AllocationMapDescriptor]
    {
        var out: [AllocationMapDescriptor] = []
        var next = lba
        let end = lba + blocks
        while next < end {
            let ask = UInt32(min(end - next, UInt64(UInt32.max)))
            let start = next
            let r: Result<(descriptors: [AllocationMapDescriptor], nextLBA: UInt64), NVMeError> =
                await withUnsafeContinuation { c in
                    allocationMap(namespace: nsid, lba: start, blocks: ask) { c.resume(returning: $0) }
                }
            let page = try r.get()
            guard page.nextLBA > next else {
                throw NVMeError(
                    .invalidRequest("allocation map made no progress at lba \(next)"),
                    operation: "\(IOOpcode.getAllocationMap)")
            }
            out.append(contentsOf: page.descriptors)
            next = page.nextLBA
        }
        return out
    }

    // MARK: Helpers

    private func info(_ nsid: UInt32, _ op: String) throws(NVMeError) -> NamespaceInfo {
        guard let ns = namespaces.first(where: { $0.id == nsid }) else {
            throw NVMeError(.invalidRequest("no namespace \(nsid)"), operation: op)
        }
        return ns
    }

    private func byteCount(_ nsid: UInt32, _ blocks: Int, _ available: Int, _ op: String) throws(NVMeError) -> Int {
        let ns = try info(nsid, op)
        guard blocks > 0, blocks <= Int(UInt32.max) else {
            throw NVMeError(.invalidRequest("block count \(blocks) must be 1...\(UInt32.max)"), operation: op)
        }
        let bytes = blocks << Int(ns.blockSizeShift)
        guard bytes <= available else {
            throw NVMeError(
                .invalidRequest("\(blocks) blocks need \(bytes) bytes, the buffer has \(available)"), operation: op)
        }
        return bytes
    }

    private func stagingBuffer(_ bytes: Int, _ op: String) throws(NVMeError) -> DMABuffer {
        guard let b = DMABuffer(memory: memory, byteCount: bytes) else {
            throw NVMeError(.outOfDMAMemory(bytes: bytes), operation: op)
        }
        return b
    }

    private func result(_ start: (@escaping RequestCompletion) -> Void) async throws(NVMeError) {
        let r: Result<Void, NVMeError> = await withUnsafeContinuation { c in start { c.resume(returning: $0) } }
        try r.get()
    }
}
