import BlockBackends
import NVMe

/// A namespace as the controller runs it: its engine (none for an inline
/// namespace) and how many of its commands are in flight. Controller thread only.
final class NamespaceRuntime {
    let namespace: Namespace
    let engine: (any StorageEngine)?
    var inFlight = 0
    /// Mutations (writes, zeroing, deallocation) completed so far: the write
    /// generation. Starts at 1, so the first Flush always reaches the storage.
    var writeGeneration: UInt64 = 1
    /// The write generation the last successful Flush covered.
    var durableGeneration: UInt64 = 0
    /// Flushes running on the engine: the generation each covers, and the tag of
    /// its command (later Flushes it covers wait on it).
    var flushesInFlight: [(generation: UInt64, tag: Int)] = []

    init(namespace: Namespace, engine: (any StorageEngine)?) {
        self.namespace = namespace
        self.engine = engine
    }
}

/// A command whose backend work is running on an engine. Its completion is
/// posted when the work finishes, in finish order, matched by command id
/// (NVMe orders nothing across commands).
struct InFlightCommand {
    /// What a successful completion adds to the counters, and how the result is used.
    enum Accounting {
        case read(UInt64)
        case written(UInt64)
        case mutation
        case allocationMap
        /// A Flush covering write generation `generation` (0: not coalesced, a
        /// broadcast Flush).
        case flush(generation: UInt64)

        var isWrite: Bool {
            switch self {
            case .written, .mutation, .flush: true
            case .read, .allocationMap: false
            }
        }

        /// Whether the operation changes data (it advances the write generation).
        var isMutation: Bool {
            switch self {
            case .written, .mutation: true
            case .read, .allocationMap, .flush: false
            }
        }
    }

    var sq: DeviceSubmissionQueue
    var entry: SubmissionQueueEntry
    var accounting: Accounting
    /// Operations still running (a broadcast Flush runs one per namespace).
    var pending: Int
    /// The first failure among them.
    var status: NVMeStatus = .success
    /// Flushes that completed along with this one (it covers what they need).
    var followers: [(sq: DeviceSubmissionQueue, cid: UInt16)] = []
}

/// Asynchronous namespaces (README, "The data path"): starting
/// operations, the in-flight bound, reaping and posting completions, draining.
extension ControllerCore {
    /// The runtime of namespace `nsid`, or `nil` when it does not exist.
    func runtime(_ nsid: UInt32) -> NamespaceRuntime? {
        guard nsid >= 1, Int(nsid) <= runtimes.count else { return nil }
        return runtimes[Int(nsid) - 1]
    }

    /// Runs `operation` for the command `entry` of `sq`: at once on an inline
    /// namespace (returns the status to complete with), or started on its engine
    /// (returns `nil`; the completion is posted when it finishes).
    func run(
        _ operation: StorageOperation, on rt: NamespaceRuntime, sq: DeviceSubmissionQueue,
        entry: SubmissionQueueEntry, accounting: InFlightCommand.Accounting
    ) -> NVMeStatus? {
        guard let engine = rt.engine else {
            return settle(
                performSynchronously(operation, on: rt.namespace.backend), accounting: accounting,
                entry: entry, runtime: rt)
        }
        let tag = allocateTag(InFlightCommand(sq: sq, entry: entry, accounting: accounting, pending: 1))
        start(operation, tag: tag, on: rt, engine)
        return nil
    }

    /// Flush on one namespace with an engine, coalesced as QEMU's block layer
    /// coalesces flushes (`bdrv_co_flush`: `write_gen`, `flushed_gen`,
    /// `flush_started_gen`). A Flush must make durable every write that completed
    /// before it was fetched: if the last successful Flush already covered them,
    /// it completes at once; if one in flight covers them (no write completed
    /// since it started), it completes with that one; otherwise it starts its own
    /// `fdatasync`. Nothing is held up behind it.
    func flushCoalesced(
        on rt: NamespaceRuntime, _ engine: any StorageEngine, sq: DeviceSubmissionQueue,
        entry: SubmissionQueueEntry
    ) -> NVMeStatus? {
        let needed = rt.writeGeneration
        if rt.durableGeneration >= needed {
            counters.add(.flushesCoalesced)
            return .success
        }
        if let covering = rt.flushesInFlight.first(where: { $0.generation >= needed }) {
            counters.add(.flushesCoalesced)
            commandsInFlight[covering.tag]!.followers.append((sq, entry.commandIdentifier))
            return nil
        }
        let tag = allocateTag(InFlightCommand(sq: sq, entry: entry, accounting: .flush(generation: needed), pending: 1))
        rt.flushesInFlight.append((needed, tag))
        start(.flush, tag: tag, on: rt, engine)
        return nil
    }

    /// Runs `operation` on every namespace (a broadcast Flush): inline ones now,
    /// the others on their engines under one tag. `nil` when some are in flight.
    func runOnEvery(_ operation: StorageOperation, sq: DeviceSubmissionQueue, entry: SubmissionQueueEntry)
        -> NVMeStatus?
    {
        var status = NVMeStatus.success
        var tag: Int? = nil
        for rt in runtimes {
            if let engine = rt.engine {
                let t =
                    tag
                    ?? allocateTag(InFlightCommand(sq: sq, entry: entry, accounting: .flush(generation: 0), pending: 0))
                tag = t
                commandsInFlight[t]!.pending += 1
                start(operation, tag: t, on: rt, engine)
            } else {
                let s = settle(
                    performSynchronously(operation, on: rt.namespace.backend), accounting: .mutation,
                    entry: entry, runtime: rt)
                if status.isSuccess { status = s }
            }
        }
        guard let tag else { return status }
        commandsInFlight[tag]!.status = status
        return nil
    }

    private func start(_ operation: StorageOperation, tag: Int, on rt: NamespaceRuntime, _ engine: any StorageEngine) {
        rt.inFlight += 1
        storageInFlight += 1
        if storageInFlight > storageInFlightPeak {
            storageInFlightPeak = storageInFlight
            counters.raise(.storageInFlightPeak, to: UInt64(storageInFlight))
        }
        counters.add(.storageOperations)
        engine.start(operation, tag: tag)
    }

    private func allocateTag(_ command: InFlightCommand) -> Int {
        if let t = freeTags.popLast() {
            commandsInFlight[t] = command
            return t
        }
        commandsInFlight.append(command)
        return commandsInFlight.count - 1
    }

    /// The status a finished operation completes its command with; counts the
    /// bytes of a successful transfer and copies an allocation map to the host.
    func settle(
        _ result: StorageResult, accounting: InFlightCommand.Accounting, entry: SubmissionQueueEntry,
        runtime rt: NamespaceRuntime
    ) -> NVMeStatus {
        switch result {
        case .failed(let error):
            return status(for: error, write: accounting.isWrite)
        case .extents(let extents):
            return completeAllocationMap(entry, extents: extents, runtime: rt)
        case .done:
            switch accounting {
            case .read(let n): counters.add(.bytesRead, n)
            case .written(let n): counters.add(.bytesWritten, n)
            case .allocationMap: return completeAllocationMap(entry, extents: [], runtime: rt)
            case .mutation, .flush: break
            }
            return .success
        }
    }

    // MARK: The in-flight bound

    /// Whether the command at `sq`'s head must wait because its namespace has
    /// reached its in-flight bound (the controller then leaves it in the queue:
    /// the host sees a full queue, never an error).
    func mustHoldBack(_ sq: DeviceSubmissionQueue) -> Bool {
        // `base` covers `size` entries and head < size: CDW0 byte 0 is the opcode,
        // bytes 7:4 the NSID.
        let slot = sq.base + sq.head * SubmissionQueueEntry.size
        let nsid = UInt32(littleEndian: slot.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        if nsid == broadcastNamespaceID {
            return runtimes.contains { $0.engine != nil && $0.inFlight >= $0.namespace.maximumInFlight }
        }
        guard let rt = runtime(nsid), rt.engine != nil else { return false }
        return rt.inFlight >= rt.namespace.maximumInFlight
    }

    // MARK: Completions

    /// Hands started operations to the kernel or the workers (once per round).
    func commitStorage() {
        for rt in runtimes { rt.engine?.commit() }
    }

    /// Whether an engine has finished operations waiting.
    var hasStorageCompletions: Bool {
        runtimes.contains { $0.engine?.hasCompletions ?? false }
    }

    /// Reaps every engine; with `post`, completes the commands whose work is
    /// over, else drops them (reset). Returns the operations reaped.
    @discardableResult
    func reapStorage(post: Bool) -> Int {
        var n = 0
        for rt in runtimes {
            guard let engine = rt.engine, engine.inFlight > 0 else { continue }
            n += engine.reap { tag, result in finishStorage(tag, result, rt, post: post) }
        }
        return n
    }

    private func finishStorage(_ tag: Int, _ result: StorageResult, _ rt: NamespaceRuntime, post: Bool) {
        rt.inFlight -= 1
        storageInFlight -= 1
        guard var command = commandsInFlight[tag] else { return }
        if command.accounting.isMutation { rt.writeGeneration += 1 }
        if case .flush(let generation) = command.accounting, generation > 0 {
            rt.flushesInFlight.removeAll { $0.tag == tag }
            if result == .done { rt.durableGeneration = max(rt.durableGeneration, generation) }
        }
        if post {
            let s = settle(result, accounting: command.accounting, entry: command.entry, runtime: rt)
            if !s.isSuccess && command.status.isSuccess { command.status = s }
        }
        command.pending -= 1
        if command.pending > 0 {
            commandsInFlight[tag] = command
            return
        }
        commandsInFlight[tag] = nil
        freeTags.append(tag)
        guard post else { return }
        complete(command.sq, cid: command.entry.commandIdentifier, status: command.status)
        for f in command.followers { complete(f.sq, cid: f.cid, status: command.status) }
    }

    /// Waits until no operation is in flight. With `post` their completions are
    /// posted (queue deletion, shutdown); without, operations not yet begun are
    /// cancelled and every completion is dropped (reset: a late read must never
    /// land in host memory the driver has reused, nor a CQE in a deleted queue).
    func drainStorage(post: Bool) {
        guard storageInFlight > 0 else { return }
        for rt in runtimes {
            guard let engine = rt.engine else { continue }
            if post { engine.commit() } else { engine.cancelQueued() }
        }
        while storageInFlight > 0 {
            wake?.drain()
            if reapStorage(post: post) > 0 || hasStorageCompletions { continue }
            // Bounded slices: a completion signals the eventfd; the slice only
            // guards against a storage stack that never answers.
            wake?.wait(timeoutMilliseconds: 1000)
        }
        if !post {
            commandsInFlight.removeAll(keepingCapacity: true)
            freeTags.removeAll(keepingCapacity: true)
            for rt in runtimes { rt.flushesInFlight.removeAll() }
        }
    }

    /// Stops the engines (the controller thread is ending; nothing is in flight).
    func closeStorage() {
        drainStorage(post: false)
        for rt in runtimes { rt.engine?.close() }
    }
}
