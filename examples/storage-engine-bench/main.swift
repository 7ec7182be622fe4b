// storage-engine-bench — the namespace engines on their own, without NBD or
// NVMe: random 4 KiB reads (or writes) at a fixed queue depth against a file or
// block device, driven exactly as the controller drives them (start, commit,
// wait on the eventfd, reap). What the storage can do through each engine, to
// set the server's numbers against.
//
//   swift run -c release storage-engine-bench FILE [io_uring|threads] [writeback|none] [QD] [SECONDS] [read|write]
import BlockBackends
import Foundation

func run() throws {
    let args = CommandLine.arguments
    guard args.count >= 2 else {
        print("usage: storage-engine-bench FILE [io_uring|threads] [writeback|none] [QD] [SECONDS] [read|write]")
        exit(2)
    }
    let path = args[1]
    let useRing = args.count <= 2 || args[2] == "io_uring"
    let cache = args.count > 3 ? (FileCaching(rawValue: args[3]) ?? .writeback) : .writeback
    let depth = args.count > 4 ? Int(args[4]) ?? 32 : 32
    let seconds = args.count > 5 ? Double(args[5]) ?? 3 : 3
    let write = args.count > 6 && args[6] == "write"
    
    let backend = try FileBackend(path: path, caching: cache)
    let wake = try WakeSignal()
    let engine: any StorageEngine = useRing
        ? try IOURingEngine(backend: backend, capacity: depth, wake: wake)
        : ThreadPoolEngine(backend: backend, workers: StorageIO.defaultWorkers, wake: wake)
    let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: depth * 4096, alignment: 4096)
    memory.initializeMemory(as: UInt8.self, repeating: 0xA5)
    let blocks = backend.byteCount / 4096
    var rng = SystemRandomNumberGenerator()
    func start(_ tag: Int) {
        let vector = IOVector(IOSegment(base: memory.baseAddress! + tag * 4096, count: 4096))
        let offset = UInt64.random(in: 0..<blocks, using: &rng) * 4096
        engine.start(write ? .write(offset: offset, from: vector, forceUnitAccess: false) : .read(offset: offset, into: vector),
                     tag: tag)
    }
    for tag in 0..<depth { start(tag) }
    engine.commit()
    var done = 0
    var errors = 0
    let began = Date()
    while Date().timeIntervalSince(began) < seconds {
        wake.drain()
        let n = engine.reap { tag, result in
            if result != .done { errors += 1 }
            done += 1
            start(tag)
        }
        engine.commit()
        if n == 0 && !engine.hasCompletions { wake.wait(timeoutMilliseconds: 100) }
    }
    let elapsed = Date().timeIntervalSince(began)
    print("\(engine.name) cache=\(cache.rawValue) QD\(depth) \(write ? "write" : "read"): \(Int(Double(done) / elapsed)) IOPS, \(errors) errors")
}

do { try run() } catch { print("storage-engine-bench: \(error)"); exit(1) }
