import BlockBackends
import DMA
import NVMe

#if canImport(Glibc)
import Glibc
#endif

/// NVM command set I/O commands (NVM Command Set Specification 1.0, §3).
///
/// Each command is validated when fetched (errors complete at once) and its
/// backend work becomes a ``StorageOperation``: run on the spot for an inline
/// namespace (memory), started on the namespace's engine otherwise, in which
/// case the completion is posted when the operation finishes (see
/// `StorageCompletion.swift`). Transfers are clipped at the backend's last byte:
/// reads of the padding up to the next logical block return zeroes, writes to it
/// are dropped.
extension ControllerCore {
    func executeIO(_ e: SubmissionQueueEntry, on sq: DeviceSubmissionQueue) {
        let cid = e.commandIdentifier
        guard let op = IOOpcode(rawValue: e.opcode) else {
            counters.add(.otherIOCommands)
            complete(sq, cid: cid, status: .invalidCommandOpcode)
            return
        }
        counters.add(ControllerCounter.executed(op))
        let status: NVMeStatus? =
            switch op {
            case .read: readWrite(e, on: sq, write: false)
            case .write: readWrite(e, on: sq, write: true)
            case .flush: flush(e, on: sq)
            case .writeZeroes: writeZeroes(e, on: sq)
            case .datasetManagement: datasetManagement(e, on: sq)
            case .getAllocationMap: allocationMap(e, on: sq)
            }
        if let status { complete(sq, cid: cid, status: status) }
    }

    /// Read (02h) and Write (01h), §3.2.4 / §3.2.6.
    private func readWrite(_ e: SubmissionQueueEntry, on sq: DeviceSubmissionQueue, write: Bool) -> NVMeStatus? {
        guard let rt = runtime(e.namespaceIdentifier) else { return .invalidNamespaceOrFormat }
        let ns = rt.namespace
        let lba = e.startingLBA
        let count = UInt64(e.numberOfLogicalBlocks0) + 1
        let bytes = Int(count) << Int(ns.blockSizeShift)
        guard bytes <= options.maximumTransferBytes else { return .invalidField }
        guard ns.contains(lba: lba, count: count) else { return .lbaOutOfRange }
        if write && ns.backend.isReadOnly { return .namespaceWriteProtected }
        if let s = mapData(e, length: bytes) { return s }
        let fua = e.dwords[12] & SubmissionQueueEntry.forceUnitAccessBit != 0 || !volatileWriteCacheEnabled
        let offset = lba << UInt64(ns.blockSizeShift)
        var vector = IOVector()
        for seg in segments { vector.append(IOSegment(base: seg.pointer, count: seg.length)) }
        let inside = Int(min(UInt64(bytes), ns.backend.byteCount - min(offset, ns.backend.byteCount)))
        if inside < bytes {
            if !write { vector.dropping(bytes: inside).zero() }
            vector = vector.prefix(bytes: inside)
        }
        let accounting: InFlightCommand.Accounting = write ? .written(UInt64(bytes)) : .read(UInt64(bytes))
        guard inside > 0 else { return settle(.done, accounting: accounting, entry: e, runtime: rt) }
        let operation: StorageOperation =
            write
            ? .write(offset: offset, from: vector, forceUnitAccess: fua)
            : .read(offset: offset, into: vector)
        return run(operation, on: rt, sq: sq, entry: e, accounting: accounting)
    }

    /// Flush (00h), §3.2.2: NSID FFFFFFFFh flushes every namespace.
    private func flush(_ e: SubmissionQueueEntry, on sq: DeviceSubmissionQueue) -> NVMeStatus? {
        if e.namespaceIdentifier == broadcastNamespaceID {
            return runOnEvery(.flush, sq: sq, entry: e)
        }
        guard let rt = runtime(e.namespaceIdentifier) else { return .invalidNamespaceOrFormat }
        guard let engine = rt.engine else {
            return run(.flush, on: rt, sq: sq, entry: e, accounting: .flush(generation: 0))
        }
        return flushCoalesced(on: rt, engine, sq: sq, entry: e)
    }

    /// Write Zeroes (08h), §3.2.8: CDW12 bit 25 DEAC lets the range be deallocated
    /// (DLFEAT says whether deallocated blocks read as zeroes), bit 30 FUA; CDW13
    /// bit 31, this emulation's "fast only" (``SubmissionQueueEntry/fastZeroOnlyBit``).
    private func writeZeroes(_ e: SubmissionQueueEntry, on sq: DeviceSubmissionQueue) -> NVMeStatus? {
        guard let rt = runtime(e.namespaceIdentifier) else { return .invalidNamespaceOrFormat }
        let ns = rt.namespace
        let lba = e.startingLBA
        let count = UInt64(e.numberOfLogicalBlocks0) + 1
        guard ns.contains(lba: lba, count: count) else { return .lbaOutOfRange }
        if ns.backend.isReadOnly { return .namespaceWriteProtected }
        guard let range = clipped(lba: lba, count: count, ns) else {
            return settle(.done, accounting: .mutation, entry: e, runtime: rt)
        }
        let operation = StorageOperation.writeZeroes(
            offset: range.lowerBound, length: range.upperBound - range.lowerBound,
            deallocate: e.dwords[12] & SubmissionQueueEntry.deallocateBit != 0,
            quickly: e.dwords[13] & SubmissionQueueEntry.fastZeroOnlyBit != 0,
            forceUnitAccess: e.dwords[12] & SubmissionQueueEntry.forceUnitAccessBit != 0)
        return run(operation, on: rt, sq: sq, entry: e, accounting: .mutation)
    }

    /// Dataset Management (09h), §3.2.3: CDW10 bits 7:0 number of ranges (0-based),
    /// CDW11 bit 2 Attribute – Deallocate. Every range is checked before any is
    /// acted on; without AD the command is advisory and does nothing.
    private func datasetManagement(_ e: SubmissionQueueEntry, on sq: DeviceSubmissionQueue) -> NVMeStatus? {
        guard let rt = runtime(e.namespaceIdentifier) else { return .invalidNamespaceOrFormat }
        let ns = rt.namespace
        let count = Int(e.dwords[10] & 0xFF) + 1
        guard let data = copyFromHost(count: count * DatasetManagementRange.size, e) else {
            return mapData(e, length: count * DatasetManagementRange.size) ?? .dataTransferError
        }
        let ranges = data.withUnsafeBytes { raw in
            (0..<count).map {
                DatasetManagementRange(bytes: UnsafeRawBufferPointer(rebasing: raw[($0 * 16)..<($0 * 16 + 16)]))
            }
        }
        for r in ranges where !ns.contains(lba: r.startingLBA, count: UInt64(r.blockCount)) {
            return .lbaOutOfRange
        }
        guard e.dwords[11] & DatasetManagementRange.deallocateAttribute != 0 else { return .success }
        if ns.backend.isReadOnly { return .namespaceWriteProtected }
        let byteRanges = ranges.compactMap { r in
            r.blockCount > 0 ? clipped(lba: r.startingLBA, count: UInt64(r.blockCount), ns) : nil
        }
        guard !byteRanges.isEmpty else { return settle(.done, accounting: .mutation, entry: e, runtime: rt) }
        return run(.deallocate(ranges: byteRanges), on: rt, sq: sq, entry: e, accounting: .mutation)
    }

    /// Get Allocation Map (vendor specific 82h); see ``AllocationMapDescriptor``.
    private func allocationMap(_ e: SubmissionQueueEntry, on sq: DeviceSubmissionQueue) -> NVMeStatus? {
        guard let rt = runtime(e.namespaceIdentifier) else { return .invalidNamespaceOrFormat }
        let ns = rt.namespace
        let lba = e.startingLBA
        let count = UInt64(e.dwords[12])
        let bufferBytes = Int(e.dwords[13])
        guard count > 0, bufferBytes >= 32, bufferBytes % 16 == 0,
            bufferBytes <= options.maximumTransferBytes
        else { return .invalidField }
        guard ns.contains(lba: lba, count: count) else { return .lbaOutOfRange }
        // The padding past the backend's end has nothing allocated.
        guard let range = clipped(lba: lba, count: count, ns) else {
            return settle(.extents([]), accounting: .allocationMap, entry: e, runtime: rt)
        }
        return run(
            .allocationMap(offset: range.lowerBound, length: range.upperBound - range.lowerBound),
            on: rt, sq: sq, entry: e, accounting: .allocationMap)
    }

    /// The bytes of `[lba, lba+count)` that lie inside the backend, or `nil` when
    /// the range is all padding.
    private func clipped(lba: UInt64, count: UInt64, _ ns: Namespace) -> Range<UInt64>? {
        let shift = UInt64(ns.blockSizeShift)
        let start = lba << shift
        let end = min((lba + count) << shift, ns.backend.byteCount)
        return start < end ? start..<end : nil
    }

    /// Encodes the allocation map of a Get Allocation Map command from the
    /// backend's extents (which cover the part of the range inside the backend;
    /// the rest is reported deallocated) and copies it to the host.
    func completeAllocationMap(_ e: SubmissionQueueEntry, extents: [AllocationExtent], runtime rt: NamespaceRuntime)
        -> NVMeStatus
    {
        let ns = rt.namespace
        let lba = e.startingLBA
        let count = UInt64(e.dwords[12])
        let bufferBytes = Int(e.dwords[13])
        let shift = UInt64(ns.blockSizeShift)
        var extents = extents
        let covered = extents.last.map { $0.offset + $0.length } ?? (lba << shift)
        let rangeEnd = (lba + count) << shift
        if covered < rangeEnd {
            extents.append(AllocationExtent(offset: covered, length: rangeEnd - covered, isAllocated: false))
        }
        let capacity = (bufferBytes - AllocationMapDescriptor.headerSize) / AllocationMapDescriptor.size
        var descriptors: [AllocationMapDescriptor] = []
        var next = lba
        let end = lba + count
        outer: for x in extents {
            // Extents are byte ranges; LBAs round outward (a block is allocated if
            // any byte of it is) and never overlap the previous descriptor.
            var start = max(next, x.offset >> shift)
            let stop = min(end, (x.offset + x.length + (1 << shift) - 1) >> shift)
            while start < stop {
                guard descriptors.count < capacity else { break outer }
                let n = UInt32(min(stop - start, UInt64(UInt32.max)))
                if let last = descriptors.last, last.deallocated == !x.isAllocated,
                    last.startingLBA + UInt64(last.blockCount) == start,
                    UInt64(last.blockCount) + UInt64(n) <= UInt64(UInt32.max)
                {
                    descriptors[descriptors.count - 1].blockCount += n
                } else {
                    descriptors.append(
                        AllocationMapDescriptor(startingLBA: start, blockCount: n, deallocated: !x.isAllocated))
                }
                start += UInt64(n)
                next = start
            }
        }
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferBytes, alignment: 16)
        defer { out.deallocate() }
        out.initializeMemory(as: UInt8.self, repeating: 0)
        AllocationMapDescriptor.encode(descriptors, nextLBA: next, into: out)
        return copyToHost(UnsafeRawBufferPointer(out), e) ?? .success
    }

    /// The NVMe status for a backend failure (§4.6.1.2): media errors for EIO,
    /// Capacity Exceeded for ENOSPC, and so on.
    func status(for error: BackendError, write: Bool) -> NVMeStatus {
        switch error.kind {
        case .outOfRange: return .lbaOutOfRange
        case .readOnly: return .namespaceWriteProtected
        case .zeroingNotFast: return .zeroingNotFast
        case .system(let e) where e == ENOSPC || e == EDQUOT: return .capacityExceeded
        case .system(let e) where e == EIO: return write ? .writeFault : .unrecoveredReadError
        case .system(let e) where e == EROFS || e == EPERM || e == EACCES: return .namespaceWriteProtected
        case .system(let e) where e == ECANCELED: return .commandAbortRequested
        case .system, .cannotOpen, .invalidConfiguration: return .internalError
        }
    }
}

extension ControllerCounter {
    /// The counter of the I/O commands executed with `opcode`: one per opcode
    /// (``otherIOCommands`` counts the opcodes the controller does not implement).
    static func executed(_ opcode: IOOpcode) -> ControllerCounter {
        switch opcode {
        case .read: .reads
        case .write: .writes
        case .flush: .flushes
        case .writeZeroes: .writeZeroes
        case .datasetManagement: .datasetManagement
        case .getAllocationMap: .allocationMaps
        }
    }
}
