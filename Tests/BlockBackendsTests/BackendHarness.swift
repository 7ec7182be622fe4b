import ConcurrencyHelpers
import DMA
import Foundation
import Synchronization
import TestSupport
import Testing

@testable import BlockBackends

/// Where a backend under test lives.
enum BackendKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case memory
    /// A sparse file in a fresh directory under /tmp (ext4 here; whatever /tmp is elsewhere).
    case fileInTmp
    /// A sparse file under /dev/shm (tmpfs), when present.
    case fileInShm
    /// A memory backend behind a FaultInjectingBackend with no rules: must be transparent.
    case faultWrappedMemory

    var testDescription: String { rawValue }

    /// The kinds usable on this machine.
    static var available: [BackendKind] {
        allCases.filter { $0 != .fileInShm || FileManager.default.fileExists(atPath: "/dev/shm") }
    }

    static var files: [BackendKind] { available.filter(\.isFile) }

    var isFile: Bool { self == .fileInTmp || self == .fileInShm }

    var parentDirectory: String? {
        switch self {
        case .fileInTmp: NSTemporaryDirectory()
        case .fileInShm: "/dev/shm"
        case .memory, .faultWrappedMemory: nil
        }
    }

    /// A fresh, zero-filled backend of `byteCount` bytes.
    func make(byteCount: UInt64, readOnly: Bool = false) throws -> Harness {
        switch self {
        case .memory:
            return Harness(backend: try MemoryBackend(byteCount: byteCount, readOnly: readOnly), directory: nil)
        case .faultWrappedMemory:
            let inner = try MemoryBackend(byteCount: byteCount, readOnly: readOnly)
            return Harness(backend: FaultInjectingBackend(wrapping: inner), directory: nil)
        case .fileInTmp, .fileInShm:
            let directory = try TemporaryDirectory(under: parentDirectory!)
            let path = directory.path + "/namespace.img"
            if readOnly {
                // A read-only namespace needs an existing file.
                _ = try FileBackend(path: path, createSize: byteCount)
            }
            let backend = try FileBackend(path: path, readOnly: readOnly, createSize: byteCount)
            return Harness(backend: backend, directory: directory)
        }
    }
}

/// A backend and the temporary directory (if any) that must outlive it.
struct Harness {
    let backend: any BlockBackend
    let directory: TemporaryDirectory?

    var file: FileBackend? { backend as? FileBackend }
}

extension BlockBackend {
    /// Reads into a buffer pre-filled with 0xA5, so that "reads as zero" is really checked.
    func bytes(at offset: UInt64, count: Int) throws(BackendError) -> [UInt8] {
        var out = [UInt8](repeating: 0xA5, count: count)
        // Array's withUnsafe...Bytes rethrow untyped errors: carry the typed one out.
        var result: Result<Void, BackendError> = .success(())
        out.withUnsafeMutableBytes { buffer in
            do throws(BackendError) { try read(at: offset, into: buffer) } catch { result = .failure(error) }
        }
        try result.get()
        return out
    }

    func write(_ bytes: [UInt8], at offset: UInt64, fua: Bool = false) throws(BackendError) {
        var result: Result<Void, BackendError> = .success(())
        bytes.withUnsafeBytes { buffer in
            do throws(BackendError) {
                try write(at: offset, from: buffer, forceUnitAccess: fua)
            } catch {
                result = .failure(error)
            }
        }
        try result.get()
    }
}

/// A recognisable pattern: byte i of block b is (b * 31 + i) & 0xff, offset by `seed`.
func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 / 4096 * 31 + $0) &+ seed }
}

/// Expects `body` to throw a BackendError of exactly `kind`; returns it.
@discardableResult
func expectBackendError(
    _ kind: BackendError.Kind, _ comment: Comment? = nil,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws(BackendError) -> Void
) -> BackendError? {
    do {
        try body()
        Issue.record(
            "expected \(kind), but nothing was thrown. \(comment?.rawValue ?? "")",
            sourceLocation: sourceLocation)
        return nil
    } catch {
        #expect(error.kind == kind, comment, sourceLocation: sourceLocation)
        return error
    }
}

/// Checks the allocation-map contract: extents cover `[offset, offset+length)` exactly,
/// in order, none empty, adjacent ones of different state.
func expectExactCover(
    _ extents: [AllocationExtent], offset: UInt64, length: UInt64, _ note: String = "",
    sourceLocation: SourceLocation = #_sourceLocation
) {
    var findings = Findings()
    findings.checkExactCover(extents, offset: offset, length: length, note, sourceLocation: sourceLocation)
    findings.record()
}

extension Findings {
    /// ``expectExactCover(_:offset:length:_:sourceLocation:)`` for a plain thread.
    mutating func checkExactCover(
        _ extents: [AllocationExtent], offset: UInt64, length: UInt64, _ note: String = "",
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let note = note.isEmpty ? "" : " (\(note))"
        if length == 0 {
            check(extents.isEmpty, "\(extents)\(note)", sourceLocation: sourceLocation)
            return
        }
        check(extents.first?.offset == offset, "\(extents)\(note)", sourceLocation: sourceLocation)
        var position = offset
        for (i, extent) in extents.enumerated() {
            check(
                extent.offset == position, "gap or overlap at \(i): \(extents)\(note)", sourceLocation: sourceLocation)
            check(extent.length > 0, "empty extent at \(i): \(extents)\(note)", sourceLocation: sourceLocation)
            if i > 0 {
                check(
                    extents[i - 1].isAllocated != extent.isAllocated, "unmerged at \(i): \(extents)\(note)",
                    sourceLocation: sourceLocation)
            }
            position = extent.offset + extent.length
        }
        check(
            position == offset + length, "cover ends at \(position): \(extents)\(note)", sourceLocation: sourceLocation)
    }
}

/// Expected extents from a list of (start, end, allocated) with merging applied.
func extents(_ runs: [(UInt64, UInt64, Bool)]) -> [AllocationExtent] {
    var out: [AllocationExtent] = []
    for (start, end, allocated) in runs { out.appendMerged(start: start, end: end, isAllocated: allocated) }
    return out
}

/// `stat(2)` of a path: (size, 512-byte blocks).
func fileStat(_ path: String) -> (size: Int64, blocks: Int64)? {
    var st = stat()
    guard stat(path, &st) == 0 else { return nil }
    return (Int64(st.st_size), Int64(st.st_blocks))
}
