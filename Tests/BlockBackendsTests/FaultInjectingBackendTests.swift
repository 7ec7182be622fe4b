import ConcurrencyHelpers
import Foundation
import TestSupport
import Testing

@testable import BlockBackends

@Suite("FaultInjectingBackend")
struct FaultInjectingBackendTests {
    typealias Operations = FaultInjectingBackend.Operations
    static let size: UInt64 = 1 << 20

    private func make(_ kind: BackendKind = .memory) throws -> (FaultInjectingBackend, Harness) {
        let harness = try kind.make(byteCount: Self.size)
        return (FaultInjectingBackend(wrapping: harness.backend), harness)
    }

    /// Runs one operation of the given kind over `[offset, offset+length)`.
    private func perform(
        _ operation: Operations, on backend: some BlockBackend,
        offset: UInt64, length: UInt64
    ) throws(BackendError) {
        switch operation {
        case .read: _ = try backend.bytes(at: offset, count: Int(length))
        case .write: try backend.write([UInt8](repeating: 0x5A, count: Int(length)), at: offset)
        case .flush: try backend.flush()
        case .deallocate: try backend.deallocate(at: offset, length: length)
        case .writeZeroes: try backend.writeZeroes(at: offset, length: length, deallocate: false)
        case .allocationMap: _ = try backend.allocationMap(at: offset, length: length)
        default: fatalError("one operation at a time")
        }
    }

    static let singleOperations: [Operations] = [.read, .write, .flush, .deallocate, .writeZeroes, .allocationMap]

    @Test(
        "a rule fails only its operation, with its errno",
        arguments: singleOperations, [EIO, ENOSPC, EROFS])
    func operationAndErrno(operation: Operations, errno: Int32) throws {
        let (backend, harness) = try make()
        defer { withExtendedLifetime(harness) {} }
        let id = backend.addRule(.init(operations: operation, range: 8192..<12288, errno: errno))
        for other in Self.singleOperations {
            if other == operation {
                let error = expectBackendError(.system(errno: errno), "\(other)") { () throws(BackendError) in
                    try perform(other, on: backend, offset: 4096, length: 8192)
                }
                #expect(error?.operation == "\(other)".trimmingCharacters(in: CharacterSet(charactersIn: "[]")))
                if other != .flush {
                    #expect(error?.offset == 4096 && error?.length == 8192)
                }
            } else {
                try perform(other, on: backend, offset: 4096, length: 8192)
            }
        }
        #expect(backend.injectedFaultCount == 1)
        #expect(backend.faultCount(for: id) == 1)
    }

    @Test("a rule fires only when the operation overlaps its range")
    func rangeOverlap() throws {
        let (backend, harness) = try make()
        defer { withExtendedLifetime(harness) {} }
        backend.addRule(.init(operations: [.read, .write], range: 8192..<12288, errno: EIO))
        // (offset, length, expected to fail)
        let cases: [(UInt64, UInt64, Bool)] = [
            (0, 8192, false), (12288, 4096, false), (0, 8193, true), (12287, 1, true), (8192, 4096, true),
            (9000, 10, true), (0, Self.size, true), (8192, 0, false), (12288, 0, false), (4096, 4096, false),
        ]
        var expectedFaults = 0
        for (offset, length, fails) in cases {
            for operation in [Operations.read, .write] {
                do {
                    try perform(operation, on: backend, offset: offset, length: length)
                    #expect(!fails, "\(operation) \(offset)+\(length) should have failed")
                } catch {
                    #expect(fails, "\(operation) \(offset)+\(length) failed: \(error)")
                    #expect(error.kind == .system(errno: EIO))
                    expectedFaults += 1
                }
            }
        }
        #expect(backend.injectedFaultCount == expectedFaults)
        #expect(expectedFaults == 10)
    }

    @Test("removing a rule restores success; counts survive removal")
    func removal() throws {
        let (backend, harness) = try make()
        defer { withExtendedLifetime(harness) {} }
        let everything = backend.addRule(.init(operations: .all, errno: EIO))
        let reads = backend.addRule(.init(operations: .read, range: 0..<4096, errno: ENOSPC))
        #expect(backend.rules.count == 2)
        for _ in 0..<3 {
            expectBackendError(.system(errno: EIO)) { () throws(BackendError) in try backend.flush() }
        }
        // The first matching rule wins.
        expectBackendError(.system(errno: EIO)) { () throws(BackendError) in _ = try backend.bytes(at: 0, count: 1) }
        #expect(backend.faultCount(for: everything) == 4)
        #expect(backend.faultCount(for: reads) == 0)

        #expect(backend.removeRule(everything))
        #expect(!backend.removeRule(everything))
        #expect(backend.faultCount(for: everything) == nil)
        try backend.flush()
        expectBackendError(.system(errno: ENOSPC)) { () throws(BackendError) in _ = try backend.bytes(at: 0, count: 1) }
        #expect(try backend.bytes(at: 4096, count: 1) == [0])

        backend.removeAllRules()
        #expect(backend.rules.isEmpty)
        #expect(try backend.bytes(at: 0, count: 1) == [0])
        #expect(backend.injectedFaultCount == 5)
    }

    @Test("fail N times, then succeed", arguments: [0, 1, 3])
    func failureLimit(limit: Int) throws {
        let (backend, harness) = try make()
        defer { withExtendedLifetime(harness) {} }
        let id = backend.addRule(.init(operations: .write, range: 0..<4096, errno: EIO, failureLimit: limit))
        var failures = 0
        for _ in 0..<limit + 3 {
            do { try backend.write([1, 2, 3], at: 100) } catch { failures += 1 }
        }
        #expect(failures == limit)
        #expect(backend.faultCount(for: id) == limit)
        #expect(backend.injectedFaultCount == limit)
        #expect(try backend.bytes(at: 100, count: 3) == [1, 2, 3])
    }

    @Test(
        "a failed operation does not reach the wrapped backend",
        arguments: BackendKind.available.filter { $0 != .faultWrappedMemory })
    func failedOperationsChangeNothing(kind: BackendKind) throws {
        let (backend, harness) = try make(kind)
        try backend.write(pattern(16384, seed: 1), at: 0)
        backend.addRule(.init(operations: .mutating, range: 4096..<8192, errno: EIO))
        #expect(throws: BackendError.self) { try backend.write([UInt8](repeating: 9, count: 16384), at: 0) }
        #expect(throws: BackendError.self) { try backend.deallocate(at: 0, length: 16384) }
        #expect(throws: BackendError.self) { try backend.writeZeroes(at: 4096, length: 1, deallocate: true) }
        expectBytes(try harness.backend.bytes(at: 0, count: 16384), pattern(16384, seed: 1))
        #expect(backend.injectedFaultCount == 3)
    }

    @Test("range and read-only errors take precedence over injected faults")
    func precedence() throws {
        let backend = FaultInjectingBackend(wrapping: try MemoryBackend(byteCount: Self.size, readOnly: true))
        backend.addRule(.init(operations: .all, errno: EIO))
        #expect(backend.isReadOnly && backend.byteCount == Self.size && !backend.hasVolatileWriteCache)
        expectBackendError(.readOnly) { () throws(BackendError) in try backend.write([1], at: 0) }
        expectBackendError(.readOnly) { () throws(BackendError) in try backend.deallocate(at: 0, length: 1) }
        expectBackendError(.readOnly) { () throws(BackendError) in
            try backend.writeZeroes(at: 0, length: 1, deallocate: true)
        }
        expectBackendError(.outOfRange) { () throws(BackendError) in _ = try backend.bytes(at: UInt64.max, count: 1) }
        expectBackendError(.outOfRange) { () throws(BackendError) in
            _ = try backend.allocationMap(at: 1, length: UInt64.max)
        }
        #expect(backend.injectedFaultCount == 0)
        expectBackendError(.system(errno: EIO)) { () throws(BackendError) in _ = try backend.bytes(at: 0, count: 1) }
        #expect(backend.injectedFaultCount == 1)
    }

    @Test("rules change while I/O runs on other threads; every fault is counted")
    func concurrentRuleChanges() throws {
        let (backend, harness) = try make()
        defer { withExtendedLifetime(harness) {} }
        let seen = Shared<(faults: Int, unexpected: [String])>((0, []))
        let stop = Shared(false)
        let group = DispatchGroup()
        let seed = TestSeed.fixed(0)
        for worker in 0..<4 {
            group.enter()
            Thread {
                defer { group.leave() }
                var rng = seed.generator(stream: UInt64(worker))
                while !stop.value {
                    let offset = UInt64.random(in: 0..<Self.size / 4096, using: &rng) * 4096
                    do throws(BackendError) {
                        if Bool.random(using: &rng) {
                            try backend.write([UInt8(worker)], at: offset)
                        } else {
                            _ = try backend.bytes(at: offset, count: 4096)
                        }
                    } catch {
                        let expected = error.kind == .system(errno: EIO) && offset < 65536
                        seen.withLock {
                            $0.faults += 1
                            if !expected { $0.unexpected.append("\(error)") }
                        }
                    }
                }
            }.start()
        }
        for _ in 0..<300 {
            let id = backend.addRule(.init(operations: [.read, .write], range: 0..<65536, errno: EIO))
            usleep(100)
            #expect(backend.removeRule(id))
            usleep(100)
        }
        stop.withLock { $0 = true }
        group.wait()
        let result = seen.value
        #expect(result.unexpected == [], "\(seed)")
        #expect(result.faults == backend.injectedFaultCount, "\(seed)")
        #expect(backend.rules.isEmpty)
    }
}
