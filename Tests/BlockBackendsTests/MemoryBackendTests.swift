import Testing

@testable import BlockBackends

@Suite("MemoryBackend")
struct MemoryBackendTests {
    @Test("pages are allocated on first write and freed by deallocate and writeZeroes")
    func pageAccounting() throws {
        let backend = try MemoryBackend(byteCount: 1 << 20)
        #expect(backend.allocatedByteCount == 0)
        #expect(!backend.hasVolatileWriteCache)

        try backend.write([1], at: 5000)  // page 1
        #expect(backend.allocatedByteCount == 4096)
        try backend.write([2], at: 5001)  // same page: no new storage
        #expect(backend.allocatedByteCount == 4096)
        try backend.write(pattern(8192, seed: 0), at: 4096 * 3 + 100)  // pages 3, 4, 5
        #expect(backend.allocatedByteCount == 4 * 4096)
        // Reads never allocate.
        _ = try backend.bytes(at: 0, count: 1 << 20)
        #expect(backend.allocatedByteCount == 4 * 4096)

        // A partial page is zeroed, not freed.
        try backend.deallocate(at: 4096 * 3 + 100, length: 100)
        #expect(backend.allocatedByteCount == 4 * 4096)
        // Fully covered pages are freed, partially covered ones kept.
        try backend.deallocate(at: 4096 * 3 + 100, length: 8192)  // frees page 4 only
        #expect(backend.allocatedByteCount == 3 * 4096)
        try backend.writeZeroes(at: 4096 * 3, length: 4096, deallocate: false)  // page 3
        #expect(backend.allocatedByteCount == 2 * 4096)
        try backend.writeZeroes(at: 4096, length: 4096 * 10, deallocate: true)  // pages 1 and 5
        #expect(backend.allocatedByteCount == 0)
        #expect(try backend.bytes(at: 0, count: 1 << 20).allSatisfy { $0 == 0 })
        // Deallocating holes is harmless.
        try backend.deallocate(at: 0, length: 1 << 20)
        #expect(backend.allocatedByteCount == 0)
    }

    @Test("a large sparse namespace costs only what is written")
    func largeSparseNamespace() throws {
        let size: UInt64 = 1 << 40  // 1 TiB
        let backend = try MemoryBackend(byteCount: size)
        try backend.write([0xAB, 0xCD], at: size - 2)
        try backend.write([0xEF], at: size / 2)
        #expect(backend.allocatedByteCount == 2 * 4096)
        #expect(try backend.bytes(at: size - 3, count: 3) == [0, 0xAB, 0xCD])
        #expect(
            try backend.allocationMap(at: 0, length: size)
                == extents([
                    (0, size / 2, false), (size / 2, size / 2 + 4096, true),
                    (size / 2 + 4096, size - 4096, false), (size - 4096, size, true),
                ]))
    }

    @Test(
        "invalid sizes are refused with a clear message",
        arguments: [UInt64(0), 1, 511, 4097, 6000, MemoryBackend.maximumByteCount + 4096, UInt64.max])
    func invalidSizes(size: UInt64) {
        do {
            _ = try MemoryBackend(byteCount: size)
            Issue.record("size \(size) accepted")
        } catch {
            guard case .invalidConfiguration(let message) = error.kind else {
                Issue.record("unexpected \(error)")
                return
            }
            #expect(message.contains("\(size)"))
            #expect(message.contains("multiple of 512") || message.contains("maximum"))
        }
    }
}
