import ByteBufferDMA
import DMA
import NBDProtocol
import NIOCore
import NVMe
import NVMeHost

/// WRITE, TRIM, WRITE_ZEROES and CACHE (proto.md "Request types").
extension CommandExecutor {
    func write(_ r: NBDRequest, _ payload: ByteBuffer, cost: Int) {
        guard r.length > 0 else { return answer(r, .success, cost: cost) }
        let s = span(r)
        let fua = r.flags.contains(.fua)
        let length = UInt64(r.length)
        let done: QueuePair.RequestCompletion = onLoop { e, result in
            if case .success = result { e.export.statistics.add(.bytesWritten, length) }
            e.finish(r, result, cost: cost)
        }
        guard s.aligned else {
            export.statistics.add(.unalignedRequests)
            guard let buffer = arenaBuffer(s.bytes, for: r, cost: cost) else { return }
            return readModifyWrite(
                s, gate: export.rmwGate, queuePair: queuePair, fua: fua,
                fill: { $0.copyIn(payload, at: s.head) }, buffer: buffer, completion: done)
        }
        // The payload is mapped for DMA where it lies in the receive buffer (the
        // controller reads it from there), unless it is not dword aligned, as PRP1
        // must be; then it is copied into arena pages.
        var buffer = DMABuffer.mapping(readableBytesOf: payload, memory: export.memory)
        if buffer == nil {
            buffer = arenaBuffer(s.bytes, for: r, cost: cost)
            buffer?.copyIn(payload)
        }
        guard let buffer else { return }
        queuePair.transfer(.write(from: buffer), lba: s.lba, blocks: s.blocks, fua: fua, deferDoorbell: batching) {
            result in
            buffer.release()
            done(result)
        }
        noteSubmitted()
    }

    /// TRIM deallocates the whole blocks inside the range (a hint: partial blocks
    /// at the edges are left alone, as the spec allows); with FUA it is flushed.
    func trim(_ r: NBDRequest) {
        guard
            let range = NBDBlockSpan.wholeBlocks(
                offset: r.offset, length: UInt64(r.length),
                blockShift: export.blockShift)
        else {
            return answer(r, .success, cost: 0)
        }
        let fua = r.flags.contains(.fua)
        let qp = queuePair
        queuePair.deallocate(
            ranges: [(range.lowerBound, UInt64(range.count))], deferDoorbell: batching,
            completion: onLoop { e, result in
                if fua, case .success = result {
                    qp.flush(completion: e.onLoop { e, flushed in e.finish(r, flushed, cost: 0) })
                } else {
                    e.finish(r, result, cost: 0)
                }
            })
        noteSubmitted()
    }

    /// WRITE_ZEROES: Write Zeroes (with Deallocate unless NO_HOLE) for the whole
    /// blocks, read-modify-write of zeroes for partial blocks at the edges
    /// (``NBDZeroingPlan``). With FAST_ZERO the whole blocks are zeroed only if
    /// the storage can without writing zeroes, else the request fails at once
    /// with ENOTSUP (proto.md `NBD_CMD_FLAG_FAST_ZERO`): the fast part goes
    /// first, so nothing is written then; the edges, at most two partial blocks,
    /// are always written.
    func writeZeroes(_ r: NBDRequest) {
        guard r.length > 0 else { return answer(r, .success, cost: 0) }
        let plan = NBDZeroingPlan(offset: r.offset, length: UInt64(r.length), blockShift: export.blockShift)
        let fua = r.flags.contains(.fua)
        let deallocate = !r.flags.contains(.noHole)
        let fastOnly = r.flags.contains(.fastZero)
        let qp = queuePair, memory = export.memory, gate = export.rmwGate, shift = export.blockShift
        var steps: [NVMeStep] = []
        if let middle = plan.middle {
            steps.append { done in
                qp.writeZeroes(
                    lba: middle.lowerBound, blocks: UInt64(middle.count), deallocate: deallocate, fua: fua,
                    fastOnly: fastOnly, completion: done)
            }
        }
        for edge in plan.edges {
            steps.append { done in
                zeroPartial(edge, blockShift: shift, memory: memory, gate: gate, queuePair: qp, fua: fua, done)
            }
        }
        if !plan.edges.isEmpty { export.statistics.add(.unalignedRequests) }
        runSequentially(steps[...], completion: onLoop { e, result in e.finish(r, result, cost: 0) })
    }

    /// CACHE: reads the range through the controller (NVMe has no prefetch), in
    /// MDTS-sized pieces through one reused buffer.
    func cache(_ r: NBDRequest) {
        guard r.length > 0 else { return answer(r, .success, cost: 0) }
        let s = span(r)
        let chunkBlocks = max(1, queuePair.limits.maximumBlocks(export.namespace))
        guard let buffer = arenaBuffer(min(s.bytes, chunkBlocks << export.blockShift), for: r, cost: 0) else { return }
        let qp = queuePair
        let steps: [NVMeStep] = nbdChunks(lba: s.lba, blocks: s.blocks, maximum: chunkBlocks).map { chunk in
            { done in qp.transfer(.read(into: buffer), lba: chunk.lowerBound, blocks: chunk.count, completion: done) }
        }
        runSequentially(
            steps[...],
            completion: onLoop { e, result in
                buffer.release()
                e.finish(r, result, cost: 0)
            })
    }
}
