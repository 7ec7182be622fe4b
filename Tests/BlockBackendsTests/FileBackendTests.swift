#if os(Linux)
import Foundation
import TestSupport
import Glibc
import Testing

@testable import BlockBackends
import CLinuxIO

@Suite("FileBackend")
struct FileBackendTests {
    static let size: UInt64 = 1 << 20

    /// A fresh directory on the file system of `kind` and a path inside it.
    private func scratch(_ kind: BackendKind) throws -> (TemporaryDirectory, String) {
        let directory = try TemporaryDirectory(under: kind.parentDirectory!)
        return (directory, directory.path + "/disk.img")
    }

    /// A backend created on a ``scratch(_:)`` file of ``size`` bytes, written full
    /// with `pattern(seed:)` when a seed is given: how most tests here begin. The
    /// directory must outlive the backend.
    private func scratchBackend(_ kind: BackendKind, filledWith seed: UInt8? = nil) throws
        -> (TemporaryDirectory, String, FileBackend)
    {
        let (directory, path) = try scratch(kind)
        let backend = try FileBackend(path: path, createSize: Self.size)
        if let seed { try backend.write(pattern(Int(Self.size), seed: seed), at: 0) }
        return (directory, path, backend)
    }

    @Test("a created file is sparse, of the requested size, and reopens", arguments: BackendKind.files)
    func createAndReopen(kind: BackendKind) throws {
        let (directory, path) = try scratch(kind)
        defer { withExtendedLifetime(directory) {} }
        do {
            let backend = try FileBackend(path: path, createSize: Self.size)
            #expect(backend.wasCreated)
            #expect(backend.fileKind == .regularFile)
            #expect(backend.byteCount == Self.size)
            #expect(backend.hasVolatileWriteCache)
            #expect(backend.allocationGranularity == 4096)
            let stat = try #require(fileStat(path))
            #expect(stat.size == Int64(Self.size))
            #expect(stat.blocks == 0, "a new namespace file must be sparse")
            try backend.write(pattern(10_000, seed: 9), at: 70_001)
            try backend.flush()
        }
        // The same size again: opens the existing file.
        let again = try FileBackend(path: path, createSize: Self.size)
        #expect(!again.wasCreated)
        expectBytes(try again.bytes(at: 70_001, count: 10_000), pattern(10_000, seed: 9))
        // No size: takes the file's size.
        let plain = try FileBackend(path: path)
        #expect(plain.byteCount == Self.size)
        expectBytes(try plain.bytes(at: 70_000, count: 10_002), [0] + pattern(10_000, seed: 9) + [0])
        // Read-only.
        let readOnly = try FileBackend(path: path, readOnly: true)
        #expect(readOnly.isReadOnly)
        expectBytes(try readOnly.bytes(at: 70_001, count: 10_000), pattern(10_000, seed: 9))
    }

    @Test("written and flushed data is in the file", arguments: BackendKind.files)
    func dataReachesTheFile(kind: BackendKind) throws {
        let (directory, path, backend) = try scratchBackend(kind)
        defer { withExtendedLifetime(directory) {} }
        let first = pattern(50_000, seed: 3)
        let second = pattern(4096, seed: 77)
        try backend.write(first, at: 123_457)
        try backend.flush()
        try backend.write(second, at: 8192, fua: true)
        // Read through a separate descriptor, bypassing the backend.
        let contents = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(contents.count == Int(Self.size))
        expectBytes(Array(contents[123_457..<123_457 + 50_000]), first)
        expectBytes(Array(contents[8192..<8192 + 4096]), second)
        #expect(contents[0..<8192].allSatisfy { $0 == 0 })
        // And the other way round: a change made outside is seen by the backend.
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seek(toOffset: 4096)
        try handle.write(contentsOf: [9, 8, 7])
        try handle.close()
        #expect(try backend.bytes(at: 4095, count: 5) == [0, 9, 8, 7, 0])
    }

    @Test(
        "FUA and fallocate fallbacks give the same data",
        arguments: BackendKind.files,
        ["none", "dsync", "zeroRange", "zeroRange+allocate", "zeroRange+punchHole", "all"])
    func fallbacks(kind: BackendKind, disabled: String) async throws {
        // Seconds of fsync'd writes and zeroing: on a thread of its own, so the
        // cooperative pool stays free for the async tests beside it.
        try await checkOnOwnThread { findings in try Self.fallbacks(kind: kind, disabled: disabled, &findings) }
    }

    static func fallbacks(kind: BackendKind, disabled: String, _ findings: inout Findings) throws {
        let directory = try TemporaryDirectory(under: kind.parentDirectory!)
        let path = directory.path + "/disk.img"
        defer { withExtendedLifetime(directory) {} }
        // Bigger than the 1 MiB zero buffer, so the fallbacks loop.
        let size: UInt64 = 3 << 20
        let backend = try FileBackend(path: path, createSize: size)
        let parts = Set(disabled.split(separator: "+").map(String.init))
        let all = disabled == "all"
        if parts.contains("dsync") || all { backend.supportsDSyncWrite.store(false, ordering: .relaxed) }
        if parts.contains("zeroRange") || all { backend.supportsZeroRange.store(false, ordering: .relaxed) }
        if parts.contains("allocate") || all { backend.supportsAllocate.store(false, ordering: .relaxed) }
        if parts.contains("punchHole") || all { backend.supportsPunchHole.store(false, ordering: .relaxed) }

        let seed = TestSeed.fixed(7)
        var rng = seed.generator()
        var model = randomBytes(Int(size), using: &rng)
        try backend.write(model, at: 0, fua: true)
        // (offset, length, writeZeroes' deallocate or nil for deallocate)
        let cases: [(UInt64, UInt64, Bool?)] = [
            (100, 5000, nil), (8192, 8192, nil), (65_536, 300_000, true), (400_001, 123_456, false),
            (600_000, 4096 * 20, false), (1_000_000, 1_600_001, false), (0, size, false),
        ]
        for (index, (offset, length, deallocate)) in cases.enumerated() {
            if index == cases.count - 1 {
                // Refill before the last, whole-namespace zeroing.
                model = randomBytes(Int(size), using: &rng)
                try backend.write(model, at: 0, fua: index % 2 == 0)
            }
            if let deallocate {
                try backend.writeZeroes(at: offset, length: length, deallocate: deallocate)
            } else {
                try backend.deallocate(at: offset, length: length)
            }
            model.replaceSubrange(Int(offset)..<Int(offset + length), with: [UInt8](repeating: 0, count: Int(length)))
            findings.checkBytes(
                try backend.bytes(at: 0, count: Int(size)), model,
                "after \(offset)+\(length) \(String(describing: deallocate)), \(seed)")
        }
        try backend.flush()
        let contents = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        findings.checkBytes(contents, model, "\(seed)")
        let map = try backend.allocationMap(at: 0, length: size)
        findings.checkExactCover(map, offset: 0, length: size)
        if all {
            // Nothing could punch: zeroes were written, the file stays fully allocated.
            findings.check(map == [AllocationExtent(offset: 0, length: size, isAllocated: true)], "\(map)")
        }
    }

    @Test("deallocate punches holes the file system sees", arguments: BackendKind.files)
    func holesInTheFile(kind: BackendKind) throws {
        let (directory, path, backend) = try scratchBackend(kind, filledWith: 5)
        defer { withExtendedLifetime(directory) {} }
        try backend.flush()
        let full = try #require(fileStat(path))
        #expect(full.blocks >= Int64(Self.size / 512))

        try backend.deallocate(at: 256 * 1024, length: 256 * 1024)
        try backend.flush()
        let punched = try #require(fileStat(path))
        #expect(punched.size == Int64(Self.size), "KEEP_SIZE: the file keeps its size")
        #expect(full.blocks - punched.blocks >= 256 * 1024 / 512, "st_blocks \(full.blocks) -> \(punched.blocks)")

        // SEEK_HOLE / SEEK_DATA through a separate descriptor.
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        try #require(fd >= 0)
        defer { close(fd) }
        #expect(lseek(fd, 0, clinux_SEEK_HOLE) == 256 * 1024)
        #expect(lseek(fd, 256 * 1024, clinux_SEEK_DATA) == 512 * 1024)

        #expect(
            try backend.allocationMap(at: 0, length: Self.size)
                == extents([
                    (0, 256 * 1024, true), (256 * 1024, 512 * 1024, false), (512 * 1024, Self.size, true),
                ]))

        // writeZeroes without deallocate keeps the storage (ZERO_RANGE on ext4 and
        // xfs; punch + fallocate on tmpfs).
        try backend.writeZeroes(at: 0, length: 128 * 1024, deallocate: false)
        try backend.flush()
        let zeroed = try #require(fileStat(path))
        #expect(zeroed.blocks >= punched.blocks, "st_blocks \(punched.blocks) -> \(zeroed.blocks)")
        #expect(try backend.bytes(at: 0, count: 128 * 1024).allSatisfy { $0 == 0 })
        // With deallocate it frees it.
        try backend.writeZeroes(at: 0, length: 128 * 1024, deallocate: true)
        try backend.flush()
        let freed = try #require(fileStat(path))
        #expect(zeroed.blocks - freed.blocks >= 128 * 1024 / 512, "st_blocks \(zeroed.blocks) -> \(freed.blocks)")
    }

    @Test("a file shortened behind the backend reads as zeroes past its end", arguments: BackendKind.files)
    func shortenedFile(kind: BackendKind) throws {
        let (directory, path, backend) = try scratchBackend(kind, filledWith: 1)
        defer { withExtendedLifetime(directory) {} }
        #expect(truncate(path, 10_000) == 0)
        let got = try backend.bytes(at: 8000, count: 8192)
        expectBytes(Array(got[..<2000]), Array(pattern(10_000, seed: 1)[8000...]))
        #expect(got[2000...].allSatisfy { $0 == 0 })
        let map = try backend.allocationMap(at: 0, length: Self.size)
        expectExactCover(map, offset: 0, length: Self.size)
        #expect(map.last == AllocationExtent(offset: 10_000, length: Self.size - 10_000, isAllocated: false))
    }

    @Test("allocation map reports everything allocated when SEEK_HOLE is unsupported", arguments: BackendKind.files)
    func noSeekHole(kind: BackendKind) throws {
        let (directory, _, backend) = try scratchBackend(kind)
        defer { withExtendedLifetime(directory) {} }
        backend.supportsSeekHole.store(false, ordering: .relaxed)
        #expect(
            try backend.allocationMap(at: 4096, length: 5000)
                == [AllocationExtent(offset: 4096, length: 5000, isAllocated: true)])
    }

    // MARK: Opening errors

    /// As root, `chmod 000` does not make a file unreadable (CAP_DAC_OVERRIDE), so
    /// permission errors are produced through paths that cannot be opened by anyone:
    /// a missing directory component (ENOENT) and a regular file used as a directory
    /// (ENOTDIR). When not running as root, `chmod 000` is checked too.
    @Test("paths that cannot be opened give cannotOpen with the errno and a hint", arguments: BackendKind.files)
    func cannotOpen(kind: BackendKind) throws {
        let (directory, path) = try scratch(kind)
        defer { withExtendedLifetime(directory) {} }

        func expectCannotOpen(
            _ target: String, _ expected: Int32, readOnly: Bool = false, createSize: UInt64? = nil,
            hint: String, sourceLocation: SourceLocation = #_sourceLocation
        ) {
            let error = expectBackendError(.cannotOpen(path: target, errno: expected), sourceLocation: sourceLocation) {
                () throws(BackendError) in
                _ = try FileBackend(path: target, readOnly: readOnly, createSize: createSize)
            }
            let message = error.map(String.init(describing:)) ?? ""
            #expect(message.contains(target), "\(message)", sourceLocation: sourceLocation)
            #expect(message.contains(hint), "\(message)", sourceLocation: sourceLocation)
        }

        expectCannotOpen(path, ENOENT, hint: "does not exist")
        expectCannotOpen(path, ENOENT, readOnly: true, hint: "does not exist")
        expectCannotOpen(directory.path + "/missing/disk.img", ENOENT, hint: "does not exist")
        // Even with a size, a missing directory is not created.
        expectCannotOpen(directory.path + "/missing/disk.img", ENOENT, createSize: Self.size, hint: "does not exist")
        // A directory, read-write (open fails) and read-only (open succeeds, fstat refuses).
        expectCannotOpen(directory.path, EISDIR, hint: "regular file or a block device")
        expectCannotOpen(directory.path, EISDIR, readOnly: true, hint: "regular file or a block device")
        // A regular file used as a directory.
        _ = try FileBackend(path: path, createSize: 4096)
        expectCannotOpen(path + "/child.img", ENOTDIR, hint: "not a directory")

        if geteuid() != 0 {
            #expect(chmod(path, 0) == 0)
            expectCannotOpen(path, EACCES, hint: "permission denied")
            expectCannotOpen(path, EACCES, readOnly: true, hint: "permission denied")
        }
    }

    @Test(
        "an existing file of any positive size is served whole; an empty one is refused",
        arguments: [Int64(0), 1, 511, 4095, 4097, 1_000_000, Int64(2048 * 333)])
    func anyFileSize(size: Int64) throws {
        let directory = try TemporaryDirectory(under: NSTemporaryDirectory())
        let path = directory.path + "/odd.img"
        try Data().write(to: URL(fileURLWithPath: path))  // not .atomic: Foundation leaves a TemporaryDirectory.* behind
        #expect(truncate(path, off_t(size)) == 0)
        for readOnly in [false, true] {
            do {
                let backend = try FileBackend(path: path, readOnly: readOnly)
                #expect(size > 0, "empty file accepted")
                #expect(backend.byteCount == UInt64(size))
                // The last byte is readable, one past it is not.
                var byte: UInt8 = 1
                try withUnsafeMutableBytes(of: &byte) { try backend.read(at: UInt64(size) - 1, into: $0) }
                #expect(byte == 0)
                #expect(throws: BackendError.self) {
                    try withUnsafeMutableBytes(of: &byte) { try backend.read(at: UInt64(size), into: $0) }
                }
            } catch let error as BackendError {
                guard case .invalidConfiguration(let message) = error.kind else {
                    Issue.record("unexpected \(error)")
                    continue
                }
                #expect(size == 0, "size \(size) refused: \(message)")
                #expect(message.contains(path) && message.contains("empty"), "\(message)")
            }
        }
    }

    @Test(
        "created files must be a positive multiple of 512 bytes",
        arguments: [UInt64(1), 511, 1000, 1_000_000])
    func createSizeRule(size: UInt64) throws {
        let directory = try TemporaryDirectory(under: NSTemporaryDirectory())
        let path = directory.path + "/new.img"
        let error = try #require(throws: BackendError.self) { _ = try FileBackend(path: path, createSize: size) }
        guard case .invalidConfiguration(let message) = error.kind else {
            Issue.record("unexpected \(error)")
            return
        }
        #expect(message.contains("\(size)") && message.contains("multiple of 512"), "\(message)")
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test("size requests: mismatch refused, invalid refused, read-only never creates")
    func sizeRequests() throws {
        let directory = try TemporaryDirectory(under: NSTemporaryDirectory())
        let path = directory.path + "/sized.img"
        _ = try FileBackend(path: path, createSize: 8192)

        // An existing file of another size is neither truncated nor extended.
        for requested: UInt64 in [4096, 16384] {
            do {
                _ = try FileBackend(path: path, createSize: requested)
                Issue.record("size \(requested) accepted for an 8192-byte file")
            } catch {
                guard case .invalidConfiguration(let message) = error.kind else {
                    Issue.record("unexpected \(error)")
                    continue
                }
                #expect(message.contains("8192") && message.contains("\(requested)"), "\(message)")
            }
            #expect(fileStat(path)?.size == 8192)
        }
        // Requested sizes must be positive multiples of 512 no larger than Int64.max.
        for requested: UInt64 in [0, 100, 4097, UInt64.max - 4095] {
            let missing = directory.path + "/never-\(requested).img"
            let error = try #require(throws: BackendError.self) {
                _ = try FileBackend(path: missing, createSize: requested)
            }
            guard case .invalidConfiguration(let message) = error.kind else {
                Issue.record("unexpected \(error)")
                continue
            }
            #expect(message.contains("\(requested)"), "\(message)")
            #expect(!FileManager.default.fileExists(atPath: missing))
        }
        // A read-only namespace never creates its file.
        let missing = directory.path + "/read-only.img"
        let error = try #require(throws: BackendError.self) {
            _ = try FileBackend(path: missing, readOnly: true, createSize: 8192)
        }
        guard case .invalidConfiguration(let message) = error.kind else {
            Issue.record("unexpected \(error)")
            return
        }
        #expect(message.contains("read-only"), "\(message)")
        #expect(!FileManager.default.fileExists(atPath: missing))
    }

    @Test("character devices and FIFOs are refused without blocking")
    func specialFiles() throws {
        let directory = try TemporaryDirectory(under: NSTemporaryDirectory())
        let fifo = directory.path + "/fifo"
        #expect(mkfifo(fifo, 0o600) == 0)
        for (path, what) in [("/dev/null", "character device"), (fifo, "FIFO")] {
            for readOnly in [false, true] {
                let error = try #require(throws: BackendError.self) {
                    _ = try FileBackend(path: path, readOnly: readOnly)
                }
                guard case .invalidConfiguration(let message) = error.kind else {
                    Issue.record("unexpected \(error)")
                    continue
                }
                #expect(message.contains(what) && message.contains("regular file or a block device"), "\(message)")
            }
        }
    }

    // MARK: Block devices

    /// Needs root and a working `losetup` (loop devices): the backing file is created
    /// here and the device detached afterwards. Cancelled (skipped) where unavailable.
    @Test("a loop block device: size by BLKGETSIZE64, I/O, discard, all-allocated map")
    func blockDevice() throws {
        let losetup = ["/usr/sbin/losetup", "/sbin/losetup", "/usr/bin/losetup"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
        guard geteuid() == 0, let losetup else {
            try Test.cancel("block device test needs root and losetup")
        }
        let directory = try TemporaryDirectory(under: NSTemporaryDirectory())
        let image = directory.path + "/loop-backing.img"
        let size: UInt64 = 2 << 20
        _ = try FileBackend(path: image, createSize: size)
        let (status, output) = runProcess(losetup, ["--find", "--show", image])
        let device = output.trimmingCharacters(in: .whitespacesAndNewlines)
        guard status == 0, device.hasPrefix("/dev/") else {
            try Test.cancel("losetup could not attach a loop device (status \(status)); no usable block device")
        }
        defer { _ = runProcess(losetup, ["--detach", device]) }

        let backend = try FileBackend(path: device)
        #expect(backend.fileKind == .blockDevice)
        #expect(backend.byteCount == size)
        // An explicit size must match the device's.
        #expect(throws: BackendError.self) { _ = try FileBackend(path: device, createSize: size * 2) }

        try backend.write(pattern(100_000, seed: 4), at: 4096 * 3 + 17, fua: true)
        try backend.flush()
        expectBytes(try backend.bytes(at: 4096 * 3 + 17, count: 100_000), pattern(100_000, seed: 4))
        try backend.deallocate(at: 4096 * 4, length: 4096 * 8)
        try backend.writeZeroes(at: 4096 * 20, length: 4096 * 2, deallocate: false)
        var expected = [UInt8](repeating: 0, count: Int(size))
        expected.replaceSubrange(4096 * 3 + 17..<4096 * 3 + 17 + 100_000, with: pattern(100_000, seed: 4))
        expected.replaceSubrange(4096 * 4..<4096 * 12, with: [UInt8](repeating: 0, count: 4096 * 8))
        expected.replaceSubrange(4096 * 20..<4096 * 22, with: [UInt8](repeating: 0, count: 4096 * 2))
        expectBytes(try backend.bytes(at: 0, count: Int(size)), expected)
        // Block devices cannot report holes.
        #expect(
            try backend.allocationMap(at: 0, length: size)
                == [AllocationExtent(offset: 0, length: size, isAllocated: true)])
        try backend.flush()
        // The data went through to the backing file.
        let contents = [UInt8](try Data(contentsOf: URL(fileURLWithPath: image)))
        expectBytes(contents, expected)
    }
}
#endif
