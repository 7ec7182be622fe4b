import BlockBackends
import DMA
import Foundation
import NVMe
import NVMeController
import NVMeHost
import TestSupport
import Testing

/// A file namespace behind the controller: what NVMe writes and flushes is in the
/// file, deallocation makes holes, Get Allocation Map (82h) tells the truth.
@Suite(.timeLimit(.minutes(30))) struct FileNamespaceTests {
    @Test(arguments: FileLocation.available)
    func dataFlushHolesAndAllocationMap(location: FileLocation) async throws {
        let file = TemporaryFile(in: location.directory)
        var c = Rig.Config()
        c.namespaceBytes = 8 << 20
        c.backend = { try FileBackend(path: file.path, createSize: $0) }
        let rig = try Rig(c)
        defer { rig.close() }
        try await guarded(rig) {
            let qp = rig.qp
            let backend = try #require(rig.backends[0] as? FileBackend)
            #expect(rig.driver.identify[.vwc] == 1, "a file has a volatile cache (the page cache)")
            let zeroes = [UInt8](repeating: 0, count: 1 << 20)

            // Written and flushed through NVMe: in the file.
            let data = randomBytes(1 << 20, seed: 11)
            try await qp.write(lba: 0, data)
            try await qp.flush()
            expectBytes(try #require(file.contents(at: 0, count: 1 << 20)), data, "file after write + flush")
            let fua = randomBytes(64 << 10, seed: 12)
            try await qp.write(lba: (2 << 20) / 512, fua, fua: true)
            expectBytes(try #require(file.contents(at: 2 << 20, count: 64 << 10)), fua, "file after FUA write")
            #expect(file.isData(at: 0, length: 1 << 20) == true)
            #expect(file.isHole(at: 4 << 20, length: 1 << 20) == true, "never written")
            let blocksWritten = try #require(file.allocatedBlocks)

            // Deallocate [256 KiB, 512 KiB): a hole, zeroes through NVMe and in the file.
            try await qp.deallocate(ranges: [(lba: 512, blocks: 512)])
            #expect(file.isHole(at: 256 << 10, length: 256 << 10) == true)
            expectBytes(try await qp.read(lba: 512, blocks: 512), zeroes[0..<(256 << 10)])
            expectBytes(try #require(file.contents(at: 256 << 10, count: 256 << 10)), zeroes[0..<(256 << 10)])
            let blocksAfterDeallocate = try #require(file.allocatedBlocks)
            #expect(
                blocksAfterDeallocate <= blocksWritten - 512, "st_blocks \(blocksWritten) → \(blocksAfterDeallocate)")

            // Write Zeroes with DEAC on [512 KiB, 640 KiB): a hole as well.
            try await qp.writeZeroes(lba: 1024, blocks: 256, deallocate: true)
            #expect(file.isHole(at: 512 << 10, length: 128 << 10) == true)
            expectBytes(try await qp.read(lba: 1024, blocks: 256), zeroes[0..<(128 << 10)])
            let blocksAfterDEAC = try #require(file.allocatedBlocks)
            #expect(blocksAfterDEAC <= blocksAfterDeallocate - 256)

            // Write Zeroes without DEAC on [640 KiB, 768 KiB): zeroes, storage kept.
            try await qp.writeZeroes(lba: 1280, blocks: 256, deallocate: false)
            expectBytes(try await qp.read(lba: 1280, blocks: 256), zeroes[0..<(128 << 10)])
            expectBytes(try #require(file.contents(at: 640 << 10, count: 128 << 10)), zeroes[0..<(128 << 10)])
            #expect(try #require(file.allocatedBlocks) >= blocksAfterDEAC, "Write Zeroes without DEAC freed storage")

            // The neighbours are untouched.
            expectBytes(try await qp.read(lba: 0, blocks: 512), data[0..<(256 << 10)])
            expectBytes(try await qp.read(lba: 1536, blocks: 512), data[(768 << 10)...])

            // Get Allocation Map agrees with the backend, LBA by LBA, and with what we did.
            let blocks = rig.driver.namespaces[0].blockCount
            let map = try await qp.allocationMap(lba: 0, blocks: blocks)
            let nvme = allocatedLBAs(map, blocks: Int(blocks))
            let direct = allocatedLBAs(try backend.allocationMap(at: 0, length: blocks * 512), blocks: Int(blocks))
            #expect(nvme == direct)
            #expect(nvme[0..<512].allSatisfy { $0 })
            #expect(!nvme[512..<1280].contains(true), "deallocated ranges must be holes")
            #expect(!nvme[(4 << 20) / 512..<Int(blocks)].contains(true))

            // Many fragments: one write, then 300 holes punched by one request (two Dataset
            // Management commands); the map then spans several commands (255 descriptors each).
            let region = (4 << 20) / 512
            try await qp.write(lba: UInt64(region), randomBytes(300 * 16 * 512, seed: 1))
            let ranges = (0..<300).map { (lba: UInt64(region + $0 * 16), blocks: UInt64(8)) }
            try await qp.deallocate(ranges: ranges.map { (lba: $0.lba + 8, blocks: $0.blocks) })
            let fragmented = try await qp.allocationMap(lba: 0, blocks: blocks)
            #expect(fragmented.count > 600)
            let nvme2 = allocatedLBAs(fragmented, blocks: Int(blocks))
            let direct2 = allocatedLBAs(try backend.allocationMap(at: 0, length: blocks * 512), blocks: Int(blocks))
            #expect(nvme2 == direct2)
            for r in ranges.prefix(10) {
                #expect(nvme2[Int(r.lba)..<Int(r.lba + 8)].allSatisfy { $0 })
                #expect(!nvme2[Int(r.lba + 8)..<Int(r.lba + 16)].contains(true))
            }
        }
    }
}

/// Per-LBA allocation from Get Allocation Map descriptors; checks they cover `[0, blocks)` in order.
func allocatedLBAs(
    _ descriptors: [AllocationMapDescriptor], blocks: Int,
    sourceLocation: SourceLocation = #_sourceLocation
) -> [Bool] {
    var out = [Bool](repeating: false, count: blocks)
    var next: UInt64 = 0
    for d in descriptors {
        #expect(d.startingLBA == next, "descriptors not contiguous at \(d.startingLBA)", sourceLocation: sourceLocation)
        #expect(d.blockCount > 0, sourceLocation: sourceLocation)
        if !d.deallocated {
            for i in Int(d.startingLBA)..<min(blocks, Int(d.startingLBA) + Int(d.blockCount)) { out[i] = true }
        }
        next = d.startingLBA + UInt64(d.blockCount)
    }
    #expect(next == UInt64(blocks), "descriptors end at \(next) of \(blocks)", sourceLocation: sourceLocation)
    return out
}

/// Per-LBA allocation from backend extents (a 512-byte block is allocated when any byte is).
func allocatedLBAs(_ extents: [AllocationExtent], blocks: Int) -> [Bool] {
    var out = [Bool](repeating: false, count: blocks)
    for x in extents where x.isAllocated {
        let first = Int(x.offset / 512), end = Int((x.offset + x.length + 511) / 512)
        for i in first..<min(end, blocks) { out[i] = true }
    }
    return out
}
