import BlockBackends
import CNBD
import Foundation
import NBDServer
import NVMeController
import TestSupport
import Testing

/// File exports through libnbd in every storage configuration (io_uring or
/// worker threads, page cache or O_DIRECT), images of sizes that are not whole
/// blocks, and FAST_ZERO where zeroing is not fast.
@Suite("NBD storage exports", .timeLimit(.minutes(30)))
struct StorageExportTests {
    static let size = 16 << 20

    struct Storage: Sendable, CustomTestStringConvertible {
        var io: StorageIO
        var cache: FileCaching
        var testDescription: String { "aio=\(io == .ioUring ? "io_uring" : "threads"), cache=\(cache.rawValue)" }
        static let all = [StorageIO.ioUring, .threads(workers: StorageIO.defaultWorkers)].flatMap { io in
            FileCaching.allCases.map { Storage(io: io, cache: $0) }
        }
    }

    @Test("every command and flag, unaligned requests and payloads, checked byte for byte", arguments: Storage.all)
    func everyCommand(storage: Storage) throws {
        let dir = try makeTemporaryDirectory(under: "/tmp", prefix: "nbdsrv")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/disk.img"
        let spec = ExportSpec(
            name: "file", backing: .file(path: path), size: UInt64(Self.size), blockSize: 512,
            cache: storage.cache, io: storage.io)
        try withServer(exports: [spec], queues: 2) { f in
            let c = try f.client(.unix, export: "file", structured: true)
            var exercise = CommandExercise(fixture: f, client: c, spec: spec, structured: true, seed: .fixed(0xD15C))
            try exercise.run()
            try c.shutdown()
            let stats = f.statistics(export: "file")
            #expect(stats.nbd[.errors] == 0)
            #expect(stats.controller[.storageOperations] > 0, "backend work ran on the engine")
            let export = try #require(f.server.exports.first)
            let expected = storage.io == .ioUring && Self.ioUringAllowed ? "io_uring" : "threads"
            #expect(export.controller.storageEngines == [expected])
            if storage.cache == .none {
                let backend = try #require(export.controller.namespaces[0].backend as? FileBackend)
                // Payloads lie after a 28-byte request header: not aligned for O_DIRECT.
                #expect(backend.bouncedTransfers.load(ordering: .relaxed) > 0, "unaligned memory was bounced")
                #expect(backend.directTransfers.load(ordering: .relaxed) > 0, "aligned memory went straight through")
            }
        }
    }

    @Test(
        "images of 1,000,000 bytes and of 2048-byte sectors serve their exact size",
        arguments: [(1_000_000, 512), (1_000_000, 4096), (2048 * 1001, 4096), (2048 * 1001, 512)])
    func exactSize(bytes: Int, blockSize: Int) throws {
        let dir = try makeTemporaryDirectory(under: "/tmp", prefix: "nbdsrv")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/odd.img"
        let seed = TestSeed.fixed(UInt64(bytes + blockSize))
        var rng = seed.generator()
        let original = randomBytes(bytes, using: &rng)
        try Data(original).write(to: URL(fileURLWithPath: path))  // not .atomic: Foundation leaves a TemporaryDirectory.* behind
        let spec = ExportSpec(name: "odd", backing: .file(path: path), size: nil, blockSize: blockSize)
        try withServer(exports: [spec]) { f in
            // libnbd checks bounds itself by default; the server's answers are under test.
            let c = try f.client(.unix, export: "odd", structured: true, strict: false)
            #expect(try c.size == Int64(bytes))
            expectBytes(
                try c.pread(count: 1000, offset: UInt64(bytes - 1000)), Array(original[(bytes - 1000)...]),
                "tail, \(seed)")
            // The last bytes, written unaligned (read-modify-write of the padded block).
            let fresh = randomBytes(333, using: &rng)
            try c.pwrite(fresh, offset: UInt64(bytes - 333))
            try c.flush()
            expectBytes(try c.pread(count: 333, offset: UInt64(bytes - 333)), fresh, "rewritten tail, \(seed)")
            // One byte past the end: EINVAL for a read, ENOSPC for a write.
            #expect(throws: LibNBDError.self) { _ = try c.pread(count: 1, offset: UInt64(bytes)) }
            #expect(throws: LibNBDError.self) { _ = try c.pread(count: 2, offset: UInt64(bytes - 1)) }
            #expect(throws: LibNBDError.self) { try c.pwrite([1], offset: UInt64(bytes)) }
            // Block status stops at the end.
            let extents = try c.blockStatus(count: 1000, offset: UInt64(bytes - 1000))
            let end = UInt64(bytes - 1000) + extents.reduce(0) { $0 + UInt64($1.length) }
            #expect(end <= UInt64(bytes), "block status past the end: \(extents)")
            try c.shutdown()
            #expect(f.statistics(export: "odd").nbd[.errors] == 3, "the three refused requests")
        }
        // The file kept its size; its last bytes are the new ones.
        let contents = try #require(FileManager.default.contents(atPath: path))
        #expect(contents.count == bytes)
        #expect(Array(contents.suffix(333)) != Array(original.suffix(333)), "\(seed)")
    }

    @Test("FAST_ZERO fails at once with ENOTSUP where zeroing would write zeroes; without it, it works")
    func fastZero() throws {
        var config = ExportOptions()
        config.wrapBackend = { SlowZeroingBackend($0) }
        let spec = ExportSpec(name: "", size: 4 << 20, blockSize: 512, io: .threads(workers: 2))
        try withServer(exports: [spec], configure: { $0.exportOptions.wrapBackend = config.wrapBackend }) { f in
            let c = try f.client(.unix)
            #expect(try c.canFastZero)
            let data = randomBytes(1 << 20, seed: 77)
            try c.pwrite(data, offset: 0)
            do {
                try c.zero(count: 1 << 20, offset: 0, flags: UInt32(LIBNBD_CMD_FLAG_FAST_ZERO))
                Issue.record("FAST_ZERO succeeded on storage that zeroes slowly")
            } catch {
                #expect((error as? LibNBDError)?.errno == ENOTSUP, "\(error)")
            }
            expectBytes(try c.pread(count: 1 << 20, offset: 0), data, "a refused FAST_ZERO changed data")
            try c.zero(count: 1 << 20, offset: 0)
            expectZeroes(try c.pread(count: 1 << 20, offset: 0))
            try c.shutdown()
        }
    }

    @Test(
        "a block device: size, LBA and rotational flag from the kernel; Write Zeroes and TRIM through its ioctls",
        arguments: [512, 4096])
    func blockDevice(sectorSize: Int) throws {
        let dir = try makeTemporaryDirectory(under: "/tmp", prefix: "nbdsrv")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let backing = dir + "/backing.img"
        try Data().write(to: URL(fileURLWithPath: backing))  // not .atomic: Foundation leaves a TemporaryDirectory.* behind
        #expect(truncate(backing, 8 << 20) == 0)
        let loop: LoopDevice
        switch LoopDevice.attach(backing, sectorSize: sectorSize) {
        case .success(let d): loop = d
        case .failure(let why): try Test.cancel("no loop device: \(why)")
        }
        let spec = ExportSpec(name: "dev", backing: .file(path: loop.path), size: nil)
        try withServer(exports: [spec]) { f in
            let export = try #require(f.server.exports.first)
            #expect(export.namespace.blockSize == max(512, min(sectorSize, 4096)), "LBA from BLKSSZGET")
            let c = try f.client(.unix, export: "dev", structured: true)
            #expect(try c.size == 8 << 20)
            #expect(try c.isRotational == (loop.queueAttribute("rotational") == "1"))
            #expect(try c.blockSize(Int32(LIBNBD_SIZE_PREFERRED)) >= Int64(sectorSize))
            let data = randomBytes(1 << 20, seed: 5)
            try c.pwrite(data, offset: 0, flags: UInt32(LIBNBD_CMD_FLAG_FUA))
            try c.zero(count: 64 << 10, offset: 128 << 10)
            try c.zero(count: 64 << 10, offset: 256 << 10, flags: UInt32(LIBNBD_CMD_FLAG_NO_HOLE))
            try c.trim(count: 64 << 10, offset: 512 << 10)
            var expected = data
            expected.replaceSubrange((128 << 10)..<(192 << 10), with: repeatElement(0, count: 64 << 10))
            expected.replaceSubrange((256 << 10)..<(320 << 10), with: repeatElement(0, count: 64 << 10))
            let got = try c.pread(count: 1 << 20, offset: 0)
            // A discarded range reads back as the device says (DLFEAT not reported):
            // compare everything else.
            expectBytes(Array(got[0..<(512 << 10)]), Array(expected[0..<(512 << 10)]), "before the trimmed range")
            expectBytes(Array(got[(576 << 10)...]), Array(expected[(576 << 10)...]), "after the trimmed range")
            try c.flush()
            try c.shutdown()
            #expect(f.statistics(export: "dev").nbd[.errors] == 0)
        }
        // What went through the device is in the backing file.
        let contents = try #require(FileManager.default.contents(atPath: backing))
        #expect(contents.count == 8 << 20)
    }

    static var ioUringAllowed: Bool {
        (try? String(contentsOfFile: "/proc/sys/kernel/io_uring_disabled", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "0" == "0"
    }
}

/// Storage that can only zero by writing zeroes (a file system without
/// fallocate's zeroing modes, a disk without Write Zeroes), over any backend.
final class SlowZeroingBackend: BlockBackend {
    let base: any BlockBackend
    init(_ base: any BlockBackend) { self.base = base }
    var byteCount: UInt64 { base.byteCount }
    var isReadOnly: Bool { base.isReadOnly }
    var hasVolatileWriteCache: Bool { base.hasVolatileWriteCache }
    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(BackendError) {
        try base.read(at: offset, into: buffer)
    }
    func write(at offset: UInt64, from buffer: UnsafeRawBufferPointer, forceUnitAccess: Bool) throws(BackendError) {
        try base.write(at: offset, from: buffer, forceUnitAccess: forceUnitAccess)
    }
    func flush() throws(BackendError) { try base.flush() }
    func deallocate(at offset: UInt64, length: UInt64) throws(BackendError) {
        try base.deallocate(at: offset, length: length)
    }
    func writeZeroes(at offset: UInt64, length: UInt64, deallocate: Bool) throws(BackendError) {
        try base.writeZeroes(at: offset, length: length, deallocate: deallocate)
    }
    func writeZeroesQuickly(at offset: UInt64, length: UInt64, deallocate: Bool) throws(BackendError) {
        throw BackendError(.zeroingNotFast, operation: "writeZeroes", offset: offset, length: length)
    }
    func allocationMap(at offset: UInt64, length: UInt64) throws(BackendError) -> [AllocationExtent] {
        try base.allocationMap(at: offset, length: length)
    }
}
