import BlockBackends
import DMA
import NVMe

/// NVM command set I/O commands (NVM Command Set Specification 1.0, §3).
extension ControllerCore {
    func executeIO(_ e: SubmissionQueueEntry, on sq: DeviceSubmissionQueue) {
        let cid = e.commandIdentifier
        guard let op = IOOpcode(rawValue: e.opcode) else {
            counters.bump(counters.otherIOCommands)
            complete(sq, cid: cid, status: .invalidCommandOpcode)
            return
        }
        let status: NVMeStatus
        switch op {
        case .read:
            counters.bump(counters.reads)
            status = readWrite(e, write: false)
        case .write:
            counters.bump(counters.writes)
            status = readWrite(e, write: true)
        case .flush:
            counters.bump(counters.flushes)
            status = flush(e)
        case .writeZeroes:
            counters.bump(counters.writeZeroes)
            status = writeZeroes(e)
        case .datasetManagement:
            counters.bump(counters.datasetManagement)
            status = datasetManagement(e)
        case .getAllocationMap:
            counters.bump(counters.allocationMaps)
            status = allocationMap(e)
        }
        complete(sq, cid: cid, status: status)
    }

    /// Read (02h) and Write (01h), §3.2.4 / §3.2.6.
    private func readWrite(_ e: SubmissionQueueEntry, write: Bool) -> NVMeStatus {
        guard let ns = namespace(e.namespaceIdentifier) else { return .invalidNamespaceOrFormat }
        let lba = e.startingLBA
        let count = UInt64(e.numberOfLogicalBlocks0) + 1
        let bytes = Int(count) << Int(ns.blockSizeShift)
        guard bytes <= options.maximumTransferBytes else { return .invalidField }
        guard ns.contains(lba: lba, count: count) else { return .lbaOutOfRange }
        if write && ns.backend.isReadOnly { return .namespaceWriteProtected }
        if let s = mapData(e, length: bytes) { return s }
        let fua = e.cdw12 & SubmissionQueueEntry.forceUnitAccessBit != 0 || !volatileWriteCacheEnabled
        var offset = lba << UInt64(ns.blockSizeShift)
        do {
            for seg in segments {
                if write {
                    try ns.backend.write(at: offset, from: UnsafeRawBufferPointer(start: seg.pointer, count: seg.length),
                                         forceUnitAccess: fua)
                } else {
                    try ns.backend.read(at: offset, into: UnsafeMutableRawBufferPointer(start: seg.pointer, count: seg.length))
                }
                offset += UInt64(seg.length)
            }
        } catch {
            return status(for: error, write: write)
        }
        if write {
            counters.bump(counters.bytesWritten, by: UInt64(bytes))
        } else {
            counters.bump(counters.bytesRead, by: UInt64(bytes))
        }
        return .success
    }

    /// Flush (00h), §3.2.2: NSID FFFFFFFFh flushes every namespace.
    private func flush(_ e: SubmissionQueueEntry) -> NVMeStatus {
        let targets: [Namespace]
        if e.namespaceIdentifier == broadcastNamespaceID {
            targets = namespaces
        } else if let ns = namespace(e.namespaceIdentifier) {
            targets = [ns]
        } else {
            return .invalidNamespaceOrFormat
        }
        do {
            for ns in targets { try ns.backend.flush() }
        } catch {
            return status(for: error, write: true)
        }
        return .success
    }

    /// Write Zeroes (08h), §3.2.8: CDW12 bit 25 DEAC lets the range be deallocated
    /// (DLFEAT says deallocated blocks read as zeroes), bit 30 FUA.
    private func writeZeroes(_ e: SubmissionQueueEntry) -> NVMeStatus {
        guard let ns = namespace(e.namespaceIdentifier) else { return .invalidNamespaceOrFormat }
        let lba = e.startingLBA
        let count = UInt64(e.numberOfLogicalBlocks0) + 1
        guard ns.contains(lba: lba, count: count) else { return .lbaOutOfRange }
        if ns.backend.isReadOnly { return .namespaceWriteProtected }
        let deallocate = e.cdw12 & SubmissionQueueEntry.deallocateBit != 0
        let fua = e.cdw12 & SubmissionQueueEntry.forceUnitAccessBit != 0
        do {
            try ns.backend.writeZeroes(at: lba << UInt64(ns.blockSizeShift), length: count << UInt64(ns.blockSizeShift),
                                       deallocate: deallocate)
            if fua { try ns.backend.flush() }
        } catch {
            return status(for: error, write: true)
        }
        return .success
    }

    /// Dataset Management (09h), §3.2.3: CDW10 bits 7:0 number of ranges (0-based),
    /// CDW11 bit 2 Attribute – Deallocate. Every range is checked before any is
    /// acted on; without AD the command is advisory and does nothing.
    private func datasetManagement(_ e: SubmissionQueueEntry) -> NVMeStatus {
        guard let ns = namespace(e.namespaceIdentifier) else { return .invalidNamespaceOrFormat }
        let count = Int(e.cdw10 & 0xFF) + 1
        guard let data = copyFromHost(count: count * DatasetManagementRange.size, e) else {
            return mapData(e, length: count * DatasetManagementRange.size) ?? .dataTransferError
        }
        let ranges = data.withUnsafeBytes { raw in
            (0..<count).map { DatasetManagementRange(bytes: UnsafeRawBufferPointer(rebasing: raw[($0 * 16)..<($0 * 16 + 16)])) }
        }
        for r in ranges where !ns.contains(lba: r.startingLBA, count: UInt64(r.blockCount)) {
            return .lbaOutOfRange
        }
        guard e.cdw11 & DatasetManagementRange.deallocateAttribute != 0 else { return .success }
        if ns.backend.isReadOnly { return .namespaceWriteProtected }
        do {
            for r in ranges where r.blockCount > 0 {
                try ns.backend.deallocate(at: r.startingLBA << UInt64(ns.blockSizeShift),
                                          length: UInt64(r.blockCount) << UInt64(ns.blockSizeShift))
            }
        } catch {
            return status(for: error, write: true)
        }
        return .success
    }

    /// Get Allocation Map (vendor specific 82h); see ``AllocationMapDescriptor``.
    private func allocationMap(_ e: SubmissionQueueEntry) -> NVMeStatus {
        guard let ns = namespace(e.namespaceIdentifier) else { return .invalidNamespaceOrFormat }
        let lba = e.startingLBA
        let count = UInt64(e.cdw12)
        let bufferBytes = Int(e.cdw13)
        guard count > 0, bufferBytes >= 32, bufferBytes % 16 == 0,
              bufferBytes <= options.maximumTransferBytes else { return .invalidField }
        guard ns.contains(lba: lba, count: count) else { return .lbaOutOfRange }
        let shift = UInt64(ns.blockSizeShift)
        let extents: [AllocationExtent]
        do {
            extents = try ns.backend.allocationMap(at: lba << shift, length: count << shift)
        } catch {
            return status(for: error, write: false)
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
                   last.startingLBA + UInt64(last.blockCount) == start, UInt64(last.blockCount) + UInt64(n) <= UInt64(UInt32.max) {
                    descriptors[descriptors.count - 1].blockCount += n
                } else {
                    descriptors.append(AllocationMapDescriptor(startingLBA: start, blockCount: n, deallocated: !x.isAllocated))
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
        case .system(let e) where e == ENOSPC || e == EDQUOT: return .capacityExceeded
        case .system(let e) where e == EIO: return write ? .writeFault : .unrecoveredReadError
        case .system(let e) where e == EROFS || e == EPERM || e == EACCES: return .namespaceWriteProtected
        case .system, .cannotOpen, .invalidConfiguration: return .internalError
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
