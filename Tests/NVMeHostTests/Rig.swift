import BlockBackends
import DMA
import NVMe
import NVMeController
import NVMeHost
import TestSupport

/// A controller, its memory and a started driver, torn down by `close()`.
final class Rig: @unchecked Sendable {
    let memory: HostMemory
    let controller: EmulatedController
    let driver: NVMeDriver
    let backends: [any BlockBackend]

    struct Config {
        var shadow = true
        var stepped = false
        var queuePairs = 1
        var depth = 64
        var blockSize = 512
        var namespaceBytes: UInt64 = 64 << 20
        var namespaces = 1
        var controller = ControllerOptions()
        var interrupts: InterruptDelivery = .dedicatedThread
        var backend: (@Sendable (UInt64) throws -> any BlockBackend)? = nil
        var retries = 5
        var memoryBytes = 1 << 30
        /// How the namespaces' backends run (`nil`: io_uring for files, inline otherwise).
        var io: StorageIO? = nil
        var maximumInFlight = Namespace.defaultMaximumInFlight
        /// Stepped mode: also run this after each step the driver takes while it
        /// waits (to act in the middle of a bring-up).
        var afterStep: (@Sendable () -> Void)? = nil
    }

    init(_ c: Config = Config()) throws {
        memory = try HostMemory(byteCount: c.memoryBytes)
        var backends: [any BlockBackend] = []
        var namespaces: [Namespace] = []
        for i in 0..<c.namespaces {
            let b = try c.backend?(c.namespaceBytes) ?? MemoryBackend(byteCount: c.namespaceBytes)
            backends.append(b)
            namespaces.append(
                try Namespace(
                    id: UInt32(i + 1), backend: b, blockSize: c.blockSize, io: c.io,
                    maximumInFlight: c.maximumInFlight))
        }
        self.backends = backends
        controller = try EmulatedController(
            memory: memory, namespaces: namespaces, options: c.controller, stepped: c.stepped)
        var o = DriverOptions()
        o.useShadowDoorbells = c.shadow
        o.queueDepth = c.depth
        o.ioQueuePairs = c.queuePairs
        o.adminTimeoutMilliseconds = 5000
        o.maximumRetries = c.retries
        let delivery = c.interrupts
        o.interrupts = { _ in delivery }
        if c.stepped {
            // The stepping hook: the driver advances the device wherever it waits.
            let device = controller
            let after = c.afterStep
            o.whileWaiting = {
                device.step(); after?()
            }
        }
        driver = NVMeDriver(function: controller, memory: memory, options: o)
        try driver.start()
    }

    func close() {
        driver.shutdown()
        controller.stop()
    }

    var qp: QueuePair { driver.queuePairs[0] }

    /// A stepped device (the test drives it) with polled completions.
    static func stepped(depth: Int = 64) throws -> Rig {
        try Rig(.stepped(depth: depth))
    }
}

extension Rig.Config {
    /// The configuration stepped tests start from: a stepped device (the test
    /// drives it), completions polled unless `interrupts` says otherwise.
    static func stepped(depth: Int = 64, shadow: Bool = true, interrupts: InterruptDelivery = .polled) -> Self {
        var c = Self()
        c.stepped = true
        c.depth = depth
        c.shadow = shadow
        c.interrupts = interrupts
        return c
    }
}

/// A reproducible byte pattern for block `lba` of version `v`.
func pattern(lba: UInt64, count: Int, version: UInt64 = 0) -> [UInt8] {
    var x = (lba &+ 1) &* 0x9E37_79B9_7F4A_7C15 ^ version &* 0xD6E8_FEB8_6659_FD93
    var out = [UInt8](repeating: 0, count: count)
    var i = 0
    while i < count {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17
        withUnsafeBytes(of: x) { b in
            for j in 0..<min(8, count - i) { out[i + j] = b[j] }
        }
        i += 8
    }
    return out
}

/// Runs an admin command expected to fail and returns its status.
func adminStatus(_ rig: Rig, _ e: SubmissionQueueEntry, data: QueuePair.DataPages? = nil) -> NVMeStatus? {
    do {
        try rig.driver.adminCommand(e, data: data)
        return .success
    } catch {
        return error.status
    }
}
