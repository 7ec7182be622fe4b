import ConcurrencyHelpers
import Foundation
import Synchronization
import TestSupport
import Testing

@testable import BlockBackends

/// The BlockBackend contract, checked against every backend kind.
@Suite("BlockBackend contract")
struct BackendConformanceTests {
    static let size: UInt64 = 1 << 20

    @Test(
        "random reads and writes match a reference model byte for byte",
        arguments: BackendKind.available, [UInt64(1), 2, 3])
    func randomOperationsMatchModel(kind: BackendKind, seed fixed: UInt64) async throws {
        // 300 operations of up to 70 KB and a model compared byte for byte: seconds of
        // synchronous work, on a thread of its own so the cooperative pool stays free.
        try await checkOnOwnThread { findings in
            try Self.randomOperations(kind: kind, seed: .fixed(fixed), &findings)
        }
    }

    static func randomOperations(kind: BackendKind, seed: TestSeed, _ findings: inout Findings) throws {
        let harness = try kind.make(byteCount: Self.size)
        let backend = harness.backend
        var model = [UInt8](repeating: 0, count: Int(Self.size))
        var rng = seed.generator()

        for step in 0..<300 {
            let offset = Int.random(in: 0..<Int(Self.size), using: &rng)
            let length = Int.random(in: 0...min(70_000, Int(Self.size) - offset), using: &rng)
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<5:
                let data = randomBytes(length, using: &rng)
                try backend.write(data, at: UInt64(offset), fua: Bool.random(using: &rng))
                model.replaceSubrange(offset..<offset + length, with: data)
            case 5:
                try backend.deallocate(at: UInt64(offset), length: UInt64(length))
                model.replaceSubrange(offset..<offset + length, with: [UInt8](repeating: 0, count: length))
            case 6:
                try backend.writeZeroes(
                    at: UInt64(offset), length: UInt64(length), deallocate: Bool.random(using: &rng))
                model.replaceSubrange(offset..<offset + length, with: [UInt8](repeating: 0, count: length))
            case 7:
                try backend.flush()
            default:
                let got = try backend.bytes(at: UInt64(offset), count: length)
                findings.checkBytes(
                    got, Array(model[offset..<offset + length]),
                    "\(seed), step \(step): read \(offset)+\(length) differs")
            }
        }
        findings.checkBytes(try backend.bytes(at: 0, count: Int(Self.size)), model, "\(seed): final image differs")
        // Holes the backend reports must read as zeroes (DLFEAT = 001b).
        for extent in try backend.allocationMap(at: 0, length: Self.size) where !extent.isAllocated {
            let hole = try backend.bytes(at: extent.offset, count: Int(extent.length))
            findings.check(hole.allSatisfy { $0 == 0 }, "\(extent) is reported as a hole but is not zero, \(seed)")
        }
    }

    @Test("unwritten blocks read as zero and are holes", arguments: BackendKind.available)
    func unwrittenReadsZero(kind: BackendKind) throws {
        let harness = try kind.make(byteCount: Self.size)
        let backend = harness.backend
        #expect(backend.byteCount == Self.size)
        #expect(try backend.bytes(at: 0, count: Int(Self.size)).allSatisfy { $0 == 0 })
        #expect(try backend.bytes(at: 12345, count: 1).allSatisfy { $0 == 0 })
        #expect(
            try backend.allocationMap(at: 0, length: Self.size)
                == [AllocationExtent(offset: 0, length: Self.size, isAllocated: false)])
        // A write of one byte leaves its neighbours zero.
        try backend.write([0xFF], at: 4097)
        #expect(try backend.bytes(at: 4096, count: 3) == [0, 0xFF, 0])
    }

    @Test("boundary accesses succeed", arguments: BackendKind.available)
    func boundaries(kind: BackendKind) throws {
        let harness = try kind.make(byteCount: Self.size)
        let backend = harness.backend
        try backend.write([1, 2, 3], at: Self.size - 3)
        #expect(try backend.bytes(at: Self.size - 3, count: 3) == [1, 2, 3])
        // Zero-length operations at the very end are in range.
        #expect(try backend.bytes(at: Self.size, count: 0) == [])
        try backend.write([], at: Self.size)
        try backend.deallocate(at: Self.size, length: 0)
        try backend.writeZeroes(at: Self.size, length: 0, deallocate: false)
        #expect(try backend.allocationMap(at: Self.size, length: 0) == [])
        try backend.writeZeroes(at: Self.size - 2, length: 2, deallocate: true)
        #expect(try backend.bytes(at: Self.size - 3, count: 3) == [1, 0, 0])
    }

    /// (offset, length) pairs outside a 1 MiB namespace, several of which overflow
    /// `offset + length`.
    static let outOfRangeCases: [(UInt64, UInt64)] = [
        (size, 1), (size - 1, 2), (size + 4096, 0), (size + 4096, 4096), (0, size + 1),
        (UInt64.max, 1), (UInt64.max, 0), (UInt64.max - 4095, 4096), (4096, UInt64.max),
        (1, UInt64.max), (UInt64.max, UInt64.max), (size, UInt64.max - size + 1),
    ]

    @Test("out-of-range and overflowing ranges throw outOfRange", arguments: BackendKind.available)
    func outOfRange(kind: BackendKind) throws {
        let harness = try kind.make(byteCount: Self.size)
        let backend = harness.backend
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 8192, alignment: 4096)
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        defer { buffer.deallocate() }
        for (offset, length) in Self.outOfRangeCases {
            let label = Comment(rawValue: "offset \(offset) length \(length)")
            let n = Int(min(length, 8192))
            // Buffers are at most 8 KiB; lengths too big for a buffer are exercised
            // through the operations that take a length.
            if length <= 8192 {
                expectBackendError(.outOfRange, label) { () throws(BackendError) in
                    try backend.read(at: offset, into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<n]))
                }
                expectBackendError(.outOfRange, label) { () throws(BackendError) in
                    try backend.write(
                        at: offset, from: UnsafeRawBufferPointer(rebasing: buffer[..<n]), forceUnitAccess: false)
                }
            }
            expectBackendError(.outOfRange, label) { () throws(BackendError) in
                try backend.deallocate(at: offset, length: length)
            }
            for deallocate in [false, true] {
                expectBackendError(.outOfRange, label) { () throws(BackendError) in
                    try backend.writeZeroes(at: offset, length: length, deallocate: deallocate)
                }
            }
            expectBackendError(.outOfRange, label) { () throws(BackendError) in
                _ = try backend.allocationMap(at: offset, length: length)
            }
        }
        // The error names the operation and the range asked for.
        let error = expectBackendError(.outOfRange) { () throws(BackendError) in
            try backend.deallocate(at: UInt64.max, length: 7)
        }
        #expect(error?.operation == "deallocate")
        #expect(error?.offset == UInt64.max)
        #expect(error?.length == 7)
        // Nothing was written by the refused requests.
        #expect(try backend.bytes(at: 0, count: Int(Self.size)).allSatisfy { $0 == 0 })
    }

    @Test("a read-only backend refuses writes, deallocate and writeZeroes", arguments: BackendKind.available)
    func readOnly(kind: BackendKind) throws {
        let harness = try kind.make(byteCount: Self.size, readOnly: true)
        let backend = harness.backend
        #expect(backend.isReadOnly)
        expectBackendError(.readOnly) { () throws(BackendError) in try backend.write([1], at: 0) }
        expectBackendError(.readOnly) { () throws(BackendError) in try backend.write([1], at: 0, fua: true) }
        expectBackendError(.readOnly) { () throws(BackendError) in try backend.deallocate(at: 0, length: 4096) }
        expectBackendError(.readOnly) { () throws(BackendError) in
            try backend.writeZeroes(at: 0, length: 4096, deallocate: false)
        }
        expectBackendError(.readOnly) { () throws(BackendError) in
            try backend.writeZeroes(at: 0, length: 4096, deallocate: true)
        }
        // Even an empty write is refused: the namespace is write protected.
        expectBackendError(.readOnly) { () throws(BackendError) in try backend.write([], at: 0) }
        // Reads, flush and the allocation map still work.
        #expect(try backend.bytes(at: 0, count: 4096).allSatisfy { $0 == 0 })
        try backend.flush()
        expectExactCover(try backend.allocationMap(at: 0, length: Self.size), offset: 0, length: Self.size)
    }

    @Test("allocation map after writes, deallocate and writeZeroes", arguments: BackendKind.available)
    func allocationMap(kind: BackendKind) throws {
        let harness = try kind.make(byteCount: Self.size)
        let backend = harness.backend
        let block: UInt64 = 4096
        try backend.write(pattern(Int(3 * block), seed: 1), at: 2 * block)  // [2, 5)
        try backend.write(pattern(Int(block), seed: 2), at: 8 * block)  // [8, 9)
        try backend.write(pattern(Int(4 * block), seed: 3), at: 16 * block)  // [16, 20)
        try backend.write([7], at: Self.size - 1)  // last block
        let afterWrites = try backend.allocationMap(at: 0, length: Self.size)
        #expect(
            afterWrites
                == extents([
                    (0, 2 * block, false), (2 * block, 5 * block, true), (5 * block, 8 * block, false),
                    (8 * block, 9 * block, true), (9 * block, 16 * block, false), (16 * block, 20 * block, true),
                    (20 * block, Self.size - block, false), (Self.size - block, Self.size, true),
                ]))

        // Clipped to a range starting and ending inside extents.
        let clipped = try backend.allocationMap(at: 2 * block + 100, length: 7 * block)
        #expect(
            clipped
                == extents([
                    (2 * block + 100, 5 * block, true), (5 * block, 8 * block, false), (8 * block, 9 * block, true),
                    (9 * block, 9 * block + 100, false),
                ]))
        let inside = try backend.allocationMap(at: 17 * block + 5, length: 10)
        #expect(inside == [AllocationExtent(offset: 17 * block + 5, length: 10, isAllocated: true)])

        // Deallocate the middle block of [2, 5): a hole splits the extent.
        try backend.deallocate(at: 3 * block, length: block)
        // writeZeroes with deallocate frees [8, 9).
        try backend.writeZeroes(at: 8 * block, length: block, deallocate: true)
        let afterHoles = try backend.allocationMap(at: 0, length: 10 * block)
        #expect(
            afterHoles
                == extents([
                    (0, 2 * block, false), (2 * block, 3 * block, true), (3 * block, 4 * block, false),
                    (4 * block, 5 * block, true), (5 * block, 10 * block, false),
                ]))
        #expect(try backend.bytes(at: 3 * block, count: Int(block)).allSatisfy { $0 == 0 })
        #expect(try backend.bytes(at: 8 * block, count: Int(block)).allSatisfy { $0 == 0 })
        expectBytes(
            try backend.bytes(at: 2 * block, count: Int(block)), Array(pattern(Int(3 * block), seed: 1)[..<4096]))

        // writeZeroes without deallocate: zeroes; the memory backend keeps no zero
        // pages (a hole), file systems differ (ext4 reports ZERO_RANGE as data, tmpfs
        // reports its re-allocated pages as holes), so only the contract is checked.
        try backend.writeZeroes(at: 16 * block, length: 2 * block, deallocate: false)
        #expect(try backend.bytes(at: 16 * block, count: Int(2 * block)).allSatisfy { $0 == 0 })
        expectBytes(
            try backend.bytes(at: 18 * block, count: Int(2 * block)), Array(pattern(Int(4 * block), seed: 3)[8192...]))
        let afterZeroes = try backend.allocationMap(at: 0, length: Self.size)
        expectExactCover(afterZeroes, offset: 0, length: Self.size)
        if !kind.isFile {
            #expect(
                try backend.allocationMap(at: 16 * block, length: 4 * block)
                    == extents([(16 * block, 18 * block, false), (18 * block, 20 * block, true)]))
        }
        // Whatever the state, [18, 20) still holds data and is reported allocated.
        #expect(
            try backend.allocationMap(at: 18 * block, length: 2 * block)
                == [AllocationExtent(offset: 18 * block, length: 2 * block, isAllocated: true)])

        // Unaligned deallocate: partial blocks are zeroed and stay allocated.
        try backend.deallocate(at: 2 * block + 10, length: 20)
        #expect(try backend.bytes(at: 2 * block + 10, count: 20).allSatisfy { $0 == 0 })
        #expect(try backend.bytes(at: 2 * block + 9, count: 1) == [pattern(10, seed: 1)[9]])
        #expect(
            try backend.allocationMap(at: 2 * block, length: block)
                == [AllocationExtent(offset: 2 * block, length: block, isAllocated: true)])

        // Every sub-range gives an exact, sorted, merged cover.
        let seed = TestSeed.fixed(42)
        var rng = seed.generator()
        for _ in 0..<50 {
            let offset = UInt64.random(in: 0..<Self.size, using: &rng)
            let length = UInt64.random(in: 0...Self.size - offset, using: &rng)
            let map = try backend.allocationMap(at: offset, length: length)
            expectExactCover(map, offset: offset, length: length, "\(seed)")
            // And agrees with the full map.
            let full = afterZeroes.filter { $0.offset < offset + length && offset < $0.offset + $0.length }
            #expect(map.map(\.isAllocated) == full.map(\.isAllocated) || length == 0, "\(offset)+\(length), \(seed)")
        }
    }

    @Test("concurrent writers on disjoint ranges", arguments: BackendKind.available)
    func concurrentWriters(kind: BackendKind) throws {
        let harness = try kind.make(byteCount: Self.size)
        let backend = harness.backend
        let writers = 8
        let region = Int(Self.size) / writers
        let failures = Shared<[String]>([])
        let images = Shared<[Int: [UInt8]]>([:])
        let group = DispatchGroup()
        let seed = TestSeed.fixed(100)
        for writer in 0..<writers {
            group.enter()
            // Real threads, so that the writers overlap even on few cores.
            let thread = Thread {
                defer { group.leave() }
                var rng = seed.generator(stream: UInt64(writer))
                var model = [UInt8](repeating: 0, count: region)
                let base = writer * region
                do throws(BackendError) {
                    for _ in 0..<200 {
                        let offset = Int.random(in: 0..<region, using: &rng)
                        let length = Int.random(in: 1...min(9000, region - offset), using: &rng)
                        if Int.random(in: 0..<8, using: &rng) == 0 {
                            try backend.deallocate(at: UInt64(base + offset), length: UInt64(length))
                            model.replaceSubrange(offset..<offset + length, with: [UInt8](repeating: 0, count: length))
                        } else {
                            let data = randomBytes(length, using: &rng)
                            try backend.write(data, at: UInt64(base + offset))
                            model.replaceSubrange(offset..<offset + length, with: data)
                        }
                        let check = Int.random(in: 0..<region, using: &rng)
                        let got = try backend.bytes(at: UInt64(base + check), count: min(512, region - check))
                        if got != Array(model[check..<check + got.count]) {
                            failures.withLock { $0.append("writer \(writer): read-back at \(check) differs") }
                        }
                    }
                } catch {
                    failures.withLock { $0.append("writer \(writer): \(error)") }
                }
                images.withLock { $0[writer] = model }
            }
            thread.start()
        }
        group.wait()
        #expect(failures.value == [], "\(seed)")
        let whole = try backend.bytes(at: 0, count: Int(Self.size))
        let expected = images.withLock { images in (0..<writers).flatMap { images[$0] ?? [] } }
        expectBytes(whole, expected, "\(seed)")
    }
}
