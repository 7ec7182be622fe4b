// shadow-doorbell-demo: brings an emulated NVMe controller up, writes 64 MiB
// through the full host → controller → backend path and reads it back, once with
// shadow doorbells and once with MMIO doorbells only, and prints the counters.
//
//   swift run -c release shadow-doorbell-demo [--mib N] [--depth QD] [--block-kib K]

import ConcurrencyHelpers
import BlockBackends
import ConcurrencyHelpers
import DMA
import Foundation
import NVMe
import NVMeController
import NVMeHost

struct Settings {
    var mebibytes = 64
    var queueDepth = 32
    var blockKiB = 4
    var queuePairs = 2
}

func parseArguments() -> Settings {
    var s = Settings()
    var args = CommandLine.arguments.dropFirst().makeIterator()
    while let a = args.next() {
        func value() -> Int {
            guard let v = args.next().flatMap(Int.init), v > 0 else {
                FileHandle.standardError.write(Data("\(a) needs a positive integer\n".utf8)); exit(2)
            }
            return v
        }
        switch a {
        case "--mib": s.mebibytes = value()
        case "--depth": s.queueDepth = value()
        case "--block-kib": s.blockKiB = value()
        case "--queues": s.queuePairs = value()
        default:
            FileHandle.standardError.write(Data("unknown option \(a); accepted: --mib N --depth QD --block-kib K --queues N\n".utf8))
            exit(2)
        }
    }
    return s
}

/// Keeps `depth` requests in flight on one queue pair until `count` are done.
final class Pump: @unchecked Sendable {
    let qp: QueuePair
    let lock = ConditionMutex()
    var next = 0
    var done = 0
    var failures: [String] = []
    let count: Int
    let issue: (Pump, Int) -> Void

    init(qp: QueuePair, count: Int, issue: @escaping (Pump, Int) -> Void) {
        self.qp = qp
        self.count = count
        self.issue = issue
    }

    func start(depth: Int) {
        for _ in 0..<depth { issueNext() }
    }

    func issueNext() {
        let i: Int? = lock.withLock {
            guard next < count else { return nil }
            next += 1
            return next - 1
        }
        if let i { issue(self, i) }
    }

    func finished(_ error: String?) {
        lock.withLock {
            done += 1
            if let error { failures.append(error) }
            if done == count { lock.broadcast() }
        }
        issueNext()
    }

    func wait() {
        lock.withLock { while done < count { lock.wait() } }
    }
}

func pattern(_ block: Int, _ bytes: Int) -> [UInt8] {
    var x = UInt64(block) &* 0x9E37_79B9_7F4A_7C15 | 1
    return (0..<bytes).map { _ in
        x ^= x << 13; x ^= x >> 7; x ^= x << 17
        return UInt8(truncatingIfNeeded: x)
    }
}

func run(shadow: Bool, settings: Settings) throws {
    let memory = try HostMemory(byteCount: 1 << 30)
    let backend = try MemoryBackend(byteCount: UInt64(settings.mebibytes) << 20)
    let namespace = try Namespace(backend: backend, blockSize: 4096)
    var controllerOptions = ControllerOptions()
    // The server's adaptive polling (see `nvme-nbd serve --poll-us`).
    controllerOptions.pollNanoseconds = ControllerOptions.recommendedPollNanoseconds
    controllerOptions.deepPollNanoseconds = ControllerOptions.recommendedDeepPollNanoseconds
    let controller = try EmulatedController(memory: memory, namespaces: [namespace], options: controllerOptions)
    defer { controller.stop() }
    var options = DriverOptions()
    options.ioQueuePairs = settings.queuePairs
    options.queueDepth = 1024
    options.useShadowDoorbells = shadow
    let driver = NVMeDriver(function: controller, memory: memory, options: options)
    try driver.start()
    defer { driver.shutdown() }

    let blockBytes = settings.blockKiB * 1024
    let blocks = (settings.mebibytes << 20) / blockBytes
    let lbasPerBlock = blockBytes / 4096
    let started = Date()
    for phase in ["write", "read"] {
        var pumps: [Pump] = []
        for (q, qp) in driver.queuePairs.enumerated() {
            // Queue pair q handles every n-th block.
            let mine = (blocks - q + driver.queuePairs.count - 1) / driver.queuePairs.count
            let pump = Pump(qp: qp, count: mine) { pump, i in
                let block = q + i * driver.queuePairs.count
                guard let buffer = DMABuffer(memory: memory, byteCount: blockBytes) else {
                    pump.finished("out of DMA memory"); return
                }
                let lba = UInt64(block * lbasPerBlock)
                if phase == "write" {
                    pattern(block, blockBytes).withUnsafeBytes { buffer.copyIn(from: $0) }
                    pump.qp.transfer(.write(from: buffer), lba: lba, blocks: lbasPerBlock) { r in
                        if case .failure(let e) = r { pump.finished("\(e)") } else { pump.finished(nil) }
                    }
                } else {
                    pump.qp.transfer(.read(into: buffer), lba: lba, blocks: lbasPerBlock) { r in
                        if case .failure(let e) = r { pump.finished("\(e)"); return }
                        pump.finished(buffer.bytes() == pattern(block, blockBytes) ? nil : "block \(block) differs")
                    }
                }
            }
            pumps.append(pump)
        }
        for p in pumps { p.start(depth: settings.queueDepth) }
        for p in pumps { p.wait() }
        let failures = pumps.flatMap(\.failures)
        guard failures.isEmpty else {
            print("FAILED \(phase): \(failures.count) errors, first: \(failures[0])")
            exit(1)
        }
    }
    let seconds = Date().timeIntervalSince(started)
    let c = controller.counters.snapshot()
    let h = driver.statistics
    let io = Double(h[.commandsSubmitted])
    print("""
    == \(shadow ? "shadow doorbells ON " : "shadow doorbells OFF") (doorbell buffer configured: \(driver.shadowDoorbellsEnabled)) ==
      \(settings.mebibytes) MiB written and read back, verified: \(Int(io)) commands of \(blockBytes / 1024) KiB, QD \(settings.queueDepth) x \(driver.queuePairs.count) queue pairs, \(String(format: "%.2f", seconds)) s (\(String(format: "%.0f", io / seconds)) IOPS)
      MMIO doorbell writes (traps): SQ tail \(c[.mmioSQTailDoorbellWrites]), CQ head \(c[.mmioCQHeadDoorbellWrites])  → \(String(format: "%.4f", Double(c.mmioIODoorbellWrites) / io)) per command
      shadow doorbell writes: SQ \(h[.sqShadowDoorbellWrites]), CQ \(h[.cqShadowDoorbellWrites]); EventIdx writes \(c[.eventIndexWrites]); shadow reads \(c[.shadowDoorbellReads])
      interrupts raised \(c[.interruptsRaised]) (\(String(format: "%.3f", Double(c[.interruptsRaised]) / io)) per command), held while masked \(c[.interruptsHeld]), handled \(h[.interruptsHandled]), merged on the host \(h[.interruptsMerged])
      controller parks \(c[.parks]), wake-ups \(c[.wakeups]); commands: read \(c[.reads]) write \(c[.writes]) errors \(c[.commandErrors])
    """)
}

let settings = parseArguments()
do {
    try run(shadow: true, settings: settings)
    try run(shadow: false, settings: settings)
} catch {
    print("error: \(error)")
    exit(1)
}
