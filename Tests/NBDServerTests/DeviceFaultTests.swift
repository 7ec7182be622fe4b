import BlockBackends
import ConcurrencyHelpers
import DMA
import Foundation
import NBDServer
import Synchronization
import TestSupport
import Testing

/// Device faults seen through NBD: backend errors become the NVMe status and then
/// the NBD errno while the connection lives on; a controller fatal status (CSTS.CFS)
/// makes the watchdog reset the controller as Linux does, and requests in flight
/// are retried, never hung.
@Suite(.timeLimit(.minutes(30))) struct DeviceFaultTests {
    /// The fault injector the export's backend was wrapped in.
    final class Injector: Sendable {
        let backend = Shared<FaultInjectingBackend?>(nil)
        var current: FaultInjectingBackend { backend.withLock { $0! } }
    }

    /// What every test here starts from: a server whose export's backend is wrapped
    /// in a fault injector, and a libnbd client connected over the Unix socket.
    static func server(
        doorbells: Doorbells, watchdogMilliseconds: Int = 100,
        _ body: (ServerFixture, Injector, NBDClient) throws -> Void
    ) throws {
        let injector = Injector()
        try withServer(
            doorbells: doorbells,
            configure: { c in
                c.exportOptions.wrapBackend = { base in
                    let f = FaultInjectingBackend(wrapping: base)
                    injector.backend.withLock { $0 = f }
                    return f
                }
                c.exportOptions.watchdogMilliseconds = watchdogMilliseconds
            }, { f in try body(f, injector, try f.client(.unix)) })
    }

    @Test(
        "EIO and ENOSPC on chosen ranges become NBD errors, the connection lives on",
        arguments: Doorbells.allCases)
    func backendFaults(doorbells: Doorbells) throws {
        try Self.server(doorbells: doorbells) { f, injector, c in
            let good = [UInt8](repeating: 0x5A, count: 8192)
            try c.pwrite(good, offset: 0)
            try c.pwrite(good, offset: 1 << 20)
            injector.current.addRule(.init(operations: .read, range: (1 << 20)..<((1 << 20) + 4096), errno: EIO))
            injector.current.addRule(.init(operations: .write, range: (2 << 20)..<(3 << 20), errno: ENOSPC))
            injector.current.addRule(.init(operations: .flush, errno: EIO, failureLimit: 1))
            let errorsBefore = f.errorCount()
            #expect(throws: LibNBDError.self) { _ = try c.pread(count: 4096, offset: 1 << 20) }
            #expect(errnoOf { _ = try c.pread(count: 4096, offset: 1 << 20) } == EIO)
            #expect(errnoOf { try c.pwrite(good, offset: 2 << 20) } == ENOSPC)
            #expect(errnoOf { try c.flush() } == EIO)
            #expect(f.errorCount() - errorsBefore == 4)
            // Everything else still works on the same connection.
            #expect(try c.pread(count: 8192, offset: 0) == good)
            try c.flush()
            injector.current.removeAllRules()
            #expect(try c.pread(count: 8192, offset: 1 << 20) == good)
            try c.pwrite(good, offset: 2 << 20)
            #expect(try c.pread(count: 8192, offset: 2 << 20) == good)
            #expect(injector.current.injectedFaultCount == 4)
        }
    }

    @Test(
        "controller fatal status: the watchdog resets it and requests complete",
        arguments: Doorbells.allCases)
    func controllerFatal(doorbells: Doorbells) throws {
        try Self.server(doorbells: doorbells) { f, _, c in
            let data = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            try c.pwrite(data, offset: 0)
            let export = f.server.exports[0]
            let resetsBefore = export.controller.counters.snapshot()[.resets]
            export.controller.injectFatalError()
            // These are submitted to a failed controller; they must complete once the
            // watchdog has reset it and the driver resubmitted them.
            let started = Date()
            #expect(try c.pread(count: 1 << 20, offset: 0) == data)
            try c.pwrite(Array(data.reversed()), offset: 4 << 20)
            #expect(try c.pread(count: 1 << 20, offset: 4 << 20) == Array(data.reversed()))
            #expect(Date().timeIntervalSince(started) < WaitScale.seconds(30))
            #expect(export.controller.counters.snapshot()[.resets] > resetsBefore)
            #expect(!export.driver.controllerFatal)
            #expect(export.driver.statistics[.retries] + export.controller.counters.snapshot()[.resets] > 0)
        }
    }
}

/// The errno a libnbd call failed with, or 0 when it succeeded.
func errnoOf(_ body: () throws -> Void) -> Int32 {
    do {
        try body()
        return 0
    } catch let e as LibNBDError {
        return e.errno
    } catch {
        return -1
    }
}
