import ConcurrencyHelpers
import DMA
import NVMe

/// Block requests on a queue pair, split into NVMe commands the way Linux's block
/// layer and nvme driver split them: Read/Write at MDTS (and NLB's 16 bits), Write
/// Zeroes at 65536 blocks, Dataset Management at 256 ranges of at most 2^32 - 1
/// blocks. A request completes once all its commands have; the first error wins.
extension QueuePair {
    public typealias RequestCompletion = @Sendable (Result<Void, NVMeError>) -> Void

    /// A Read (02h) or Write (01h) of `blocks` blocks at `lba` (NVM Command Set
    /// Specification 1.0, §3.2.4, §3.2.6), with Force Unit Access when `fua`;
    /// the buffer must hold the blocks.
    public func transfer(
        _ direction: BlockTransfer, namespace nsid: UInt32 = 1, lba: UInt64, blocks: Int, fua: Bool = false,
        deferDoorbell: Bool = false, completion: @escaping RequestCompletion
    ) {
        let (opcode, buffer) = direction.command
        guard let ns = namespaces.first(where: { $0.id == nsid }) else {
            return completion(.failure(NVMeError(.invalidRequest("no namespace \(nsid)"), operation: "\(opcode)")))
        }
        guard blocks > 0, blocks << Int(ns.blockSizeShift) <= buffer.byteCount else {
            return completion(
                .failure(
                    NVMeError(
                        .invalidRequest("\(blocks) blocks do not fit a \(buffer.byteCount)-byte buffer"),
                        operation: "\(opcode)")))
        }
        let perCommand = limits.maximumBlocks(ns)
        let pagesPerBlockShift = Int(ns.blockSizeShift)
        let fuaBit = fua ? SubmissionQueueEntry.forceUnitAccessBit : 0
        func command(_ start: Int, _ n: Int) -> (SubmissionQueueEntry, DataPages) {
            var e = SubmissionQueueEntry(opcode: opcode.rawValue, namespaceIdentifier: nsid)
            e.startingLBA = lba + UInt64(start)
            e.dwords[12] = UInt32(n - 1) | fuaBit
            let range = buffer.pageRange(offset: start << pagesPerBlockShift, count: n << pagesPerBlockShift)
            return (e, DataPages(buffer: buffer, first: range.first, count: range.count, offset: range.offsetInFirst))
        }
        if blocks <= perCommand {
            let (e, data) = command(0, blocks)
            submit(e, data: data, deferDoorbell: deferDoorbell) { cqe in
                completion(
                    cqe.status.isSuccess
                        ? .success(())
                        : .failure(
                            NVMeError(
                                .status(cqe.status), operation: "\(opcode) nsid \(nsid) lba \(lba)+\(blocks)"))
                )
            }
            return
        }
        counters.add(.splitRequests)
        let parts = (blocks + perCommand - 1) / perCommand
        let tracker = SplitTracker(parts: parts, completion: completion)
        var start = 0
        while start < blocks {
            let n = min(perCommand, blocks - start)
            let (e, data) = command(start, n)
            let first = lba + UInt64(start)
            submit(e, data: data, deferDoorbell: deferDoorbell || start + n < blocks) { cqe in
                tracker.finish(
                    cqe.status.isSuccess
                        ? nil
                        : NVMeError(.status(cqe.status), operation: "\(opcode) nsid \(nsid) lba \(first)+\(n)")
                )
            }
            start += n
        }
    }

    /// Flush (NVM command 00h).
    public func flush(namespace nsid: UInt32 = 1, deferDoorbell: Bool = false, completion: @escaping RequestCompletion)
    {
        submit(
            SubmissionQueueEntry(opcode: IOOpcode.flush.rawValue, namespaceIdentifier: nsid),
            deferDoorbell: deferDoorbell
        ) { cqe in
            completion(
                cqe.status.isSuccess
                    ? .success(()) : .failure(NVMeError(.status(cqe.status), operation: "Flush nsid \(nsid)")))
        }
    }

    /// Write Zeroes (08h), with the Deallocate bit when `deallocate`. With
    /// `fastOnly` the controller zeroes only if it can without writing zeroes and
    /// otherwise fails with ``NVMeStatus/zeroingNotFast`` (the emulation's vendor
    /// bit ``SubmissionQueueEntry/fastZeroOnlyBit``; NBD FAST_ZERO).
    public func writeZeroes(
        namespace nsid: UInt32 = 1, lba: UInt64, blocks: UInt64, deallocate: Bool, fua: Bool = false,
        fastOnly: Bool = false, deferDoorbell: Bool = false,
        completion: @escaping RequestCompletion
    ) {
        guard blocks > 0 else { return completion(.success(())) }
        let per: UInt64 = 65536
        let parts = Int((blocks + per - 1) / per)
        if parts > 1 { counters.add(.splitRequests) }
        let tracker = SplitTracker(parts: parts, completion: completion)
        var start: UInt64 = 0
        while start < blocks {
            let n = min(per, blocks - start)
            var e = SubmissionQueueEntry(opcode: IOOpcode.writeZeroes.rawValue, namespaceIdentifier: nsid)
            e.startingLBA = lba + start
            e.dwords[12] =
                UInt32(n - 1) | (deallocate ? SubmissionQueueEntry.deallocateBit : 0)
                | (fua ? SubmissionQueueEntry.forceUnitAccessBit : 0)
            e.dwords[13] = fastOnly ? SubmissionQueueEntry.fastZeroOnlyBit : 0
            let first = lba + start
            submit(e, deferDoorbell: deferDoorbell || start + n < blocks) { cqe in
                tracker.finish(
                    cqe.status.isSuccess
                        ? nil
                        : NVMeError(.status(cqe.status), operation: "Write Zeroes nsid \(nsid) lba \(first)+\(n)"))
            }
            start += n
        }
    }

    /// Dataset Management (09h) with Attribute – Deallocate over `ranges`.
    public func deallocate(
        namespace nsid: UInt32 = 1, ranges: [(lba: UInt64, blocks: UInt64)],
        deferDoorbell: Bool = false, completion: @escaping RequestCompletion
    ) {
        var split: [DatasetManagementRange] = []
        for r in ranges {
            var start: UInt64 = 0
            while start < r.blocks {
                let n = min(r.blocks - start, UInt64(UInt32.max))
                split.append(DatasetManagementRange(startingLBA: r.lba + start, blockCount: UInt32(n)))
                start += n
            }
        }
        guard !split.isEmpty else { return completion(.success(())) }
        let per = DatasetManagementRange.maximumCount
        let parts = (split.count + per - 1) / per
        if parts > 1 { counters.add(.splitRequests) }
        let tracker = SplitTracker(parts: parts, completion: completion)
        for p in 0..<parts {
            let chunk = split[(p * per)..<min(split.count, (p + 1) * per)]
            guard let buffer = DMABuffer(memory: memory, byteCount: chunk.count * DatasetManagementRange.size) else {
                tracker.finish(NVMeError(.outOfDMAMemory(bytes: chunk.count * 16), operation: "Dataset Management"))
                continue
            }
            buffer.forEachSegment { segment, _ in
                for (i, r) in chunk.enumerated() {
                    r.encode(into: UnsafeMutableRawBufferPointer(rebasing: segment[(i * 16)..<(i * 16 + 16)]))
                }
            }
            var e = SubmissionQueueEntry(opcode: IOOpcode.datasetManagement.rawValue, namespaceIdentifier: nsid)
            e.dwords[10] = UInt32(chunk.count - 1)
            e.dwords[11] = DatasetManagementRange.deallocateAttribute
            submit(
                e, data: DataPages(buffer: buffer, first: 0, count: 1), deferDoorbell: deferDoorbell || p + 1 < parts
            ) { cqe in
                _ = buffer  // keeps the range list alive until the controller has read it
                tracker.finish(
                    cqe.status.isSuccess
                        ? nil
                        : NVMeError(.status(cqe.status), operation: "Dataset Management nsid \(nsid)"))
            }
        }
    }

    /// One Get Allocation Map command (vendor 82h) describing `[lba, lba+blocks)`
    /// from its start; `nextLBA` says where the answer stopped when the one-page
    /// buffer filled first.
    public func allocationMap(
        namespace nsid: UInt32 = 1, lba: UInt64, blocks: UInt32, deferDoorbell: Bool = false,
        completion:
            @escaping @Sendable (Result<(descriptors: [AllocationMapDescriptor], nextLBA: UInt64), NVMeError>) -> Void
    ) {
        guard let buffer = DMABuffer(memory: memory, byteCount: 4096) else {
            return completion(
                .failure(NVMeError(.outOfDMAMemory(bytes: 4096), operation: "\(IOOpcode.getAllocationMap)")))
        }
        var e = SubmissionQueueEntry(opcode: IOOpcode.getAllocationMap.rawValue, namespaceIdentifier: nsid)
        e.startingLBA = lba
        e.dwords[12] = blocks
        e.dwords[13] = 4096
        submit(e, data: DataPages(buffer: buffer, first: 0, count: 1), deferDoorbell: deferDoorbell) { cqe in
            guard cqe.status.isSuccess else {
                return completion(
                    .failure(
                        NVMeError(
                            .status(cqe.status),
                            operation: "\(IOOpcode.getAllocationMap) nsid \(nsid) lba \(lba)+\(blocks)")))
            }
            var result: (descriptors: [AllocationMapDescriptor], nextLBA: UInt64)?
            buffer.forEachSegment(count: 4096) { segment, _ in
                result = AllocationMapDescriptor.decode(UnsafeRawBufferPointer(segment))
            }
            guard let result else {
                return completion(
                    .failure(
                        NVMeError(
                            .invalidRequest("malformed allocation map"), operation: "\(IOOpcode.getAllocationMap)"))
                )
            }
            completion(.success(result))
        }
    }
}

/// Completes a split request once every part has finished; the first error wins.
final class SplitTracker: Sendable {
    private let state: Locked<(remaining: Int, error: NVMeError?)>
    private let completion: QueuePair.RequestCompletion

    init(parts: Int, completion: @escaping QueuePair.RequestCompletion) {
        state = Locked((parts, nil))
        self.completion = completion
    }

    func finish(_ error: NVMeError?) {
        let done: (Bool, NVMeError?) = state.withLock { s in
            if s.error == nil, let error { s.error = error }
            s.remaining -= 1
            return (s.remaining == 0, s.error)
        }
        guard done.0 else { return }
        completion(done.1.map { .failure($0) } ?? .success(()))
    }
}
