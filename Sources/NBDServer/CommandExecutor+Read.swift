import ByteBufferDMA
import DMA
import NBDProtocol
import NIOCore
import NVMe
import NVMeHost

/// READ and BLOCK_STATUS: the commands whose replies carry what the namespace
/// holds (proto.md "NBD_CMD_READ", "NBD_CMD_BLOCK_STATUS").
extension CommandExecutor {
    typealias AllocationMap = Result<(descriptors: [AllocationMapDescriptor], nextLBA: UInt64), NVMeError>

    func read(_ r: NBDRequest, cost: Int) {
        guard r.length > 0 else { return answer(r, .success, cost: cost) }
        let s = span(r)
        if !s.aligned { export.statistics.add(.unalignedRequests) }
        let wantHoles =
            replies.structured && !r.flags.contains(.dontFragment)
            && Int(r.length) >= limits.holeDetectionThreshold
        // A read answered in one piece (a simple reply, or one OFFSET_DATA chunk)
        // whose data starts on a block boundary carries its reply header in the
        // same buffer, right before the data: one allocation and one socket write
        // fewer per read. The header is the success header; a failed read is
        // answered with a status reply instead and the buffer dropped. Small reads
        // only: their replies are where a buffer more counts, and the header makes
        // the buffer's power-of-two capacity the next one up.
        let headerFirst = !wantHoles && s.head == 0 && s.bytes <= ReplyBuilder.headerFirstLimit
        // The reply's data buffer is mapped for DMA and the controller reads straight
        // into it: the only copy on this side is the socket's. With every mapping
        // slot in use (thousands of reads in flight) it bounces through arena pages
        // and is copied into the reply at completion instead.
        var reply = replies.allocator.buffer(capacity: (headerFirst ? ReplyBuilder.readHeaderRoom : 0) + s.bytes)
        let headerLength =
            headerFirst ? replies.writeReadHeader(r.cookie, offset: r.offset, length: Int(r.length), into: &reply) : 0
        let mapped = DMABuffer.mapping(writableSpaceOf: &reply, count: s.bytes, memory: export.memory)
        guard let buffer = mapped ?? arenaBuffer(s.bytes, for: r, cost: cost) else { return }
        let data = ReadData(
            reply: reply, buffer: buffer, span: s, length: Int(r.length),
            headerLength: headerLength)
        let fua = r.flags.contains(.fua)
        guard wantHoles else {
            queuePair.transfer(
                .read(into: buffer), lba: s.lba, blocks: s.blocks, fua: fua, deferDoorbell: batching,
                completion: onLoop { e, result in e.finishRead(r, data, result, map: nil, cost: cost) })
            return noteSubmitted()
        }
        // Large structured reads: ask for the allocation map alongside the data,
        // so deallocated ranges can be answered with OFFSET_HOLE.
        let join = ReadJoin()
        queuePair.transfer(
            .read(into: buffer), lba: s.lba, blocks: s.blocks, fua: fua, deferDoorbell: true,
            completion: onLoop { e, result in
                join.data = result
                if let map = join.map { e.finishRead(r, data, result, map: map, cost: cost) }
            })
        queuePair.allocationMap(
            lba: s.lba, blocks: UInt32(s.blocks), deferDoorbell: batching,
            completion: onLoop { e, map in
                join.map = map
                if let result = join.data { e.finishRead(r, data, result, map: map, cost: cost) }
            })
        noteSubmitted()
    }

    /// Sends the reply of a read: its data as one simple reply, or structured
    /// chunks (OFFSET_HOLE where the allocation map says so).
    private func finishRead(
        _ r: NBDRequest, _ data: ReadData, _ result: Result<Void, NVMeError>, map: AllocationMap?,
        cost: Int
    ) {
        let bytes = data.filled()
        guard case .success = result else { return finish(r, result, cost: cost) }
        export.statistics.add(.bytesRead, UInt64(r.length))
        if data.headerLength > 0 {
            // The header went in ahead of the data at submission.
            sink.send(bytes)
            return sink.requestFinished(r, cost: cost)
        }
        var runs = [NBDExtent(r.offset..<(r.offset + UInt64(r.length)), isHole: false)]
        if case .success(let m)? = map {
            runs = NBDExtents.readRuns(offset: r.offset, length: UInt64(r.length), extents: extents(m.descriptors))
        }
        replies.read(r.cookie, offset: r.offset, data: bytes, runs: runs) { sink.send($0) }
        sink.requestFinished(r, cost: cost)
    }

    func blockStatus(_ r: NBDRequest) {
        let s = span(r)
        let contextID = allocationContext!
        queuePair.allocationMap(
            lba: s.lba, blocks: UInt32(min(s.blocks, Int(UInt32.max))), deferDoorbell: batching,
            completion: onLoop { e, result in
                switch result {
                case .failure(let error):
                    e.finish(r, .failure(error), cost: 0)
                case .success(let m):
                    let out = NBDExtents.blockStatus(
                        offset: r.offset, length: r.length, extents: e.extents(m.descriptors),
                        exportSize: e.export.size, granularity: UInt64(1) << e.export.blockShift,
                        requestOne: r.flags.contains(.requestOne))
                    guard !out.isEmpty else { return e.answer(r, .eio, "empty allocation map", cost: 0) }
                    e.sink.send(e.replies.blockStatus(r.cookie, contextID: contextID, out))
                    e.sink.requestFinished(r, cost: 0)
                }
            })
        noteSubmitted()
    }

    /// The namespace's allocation map in bytes.
    func extents(_ descriptors: [AllocationMapDescriptor]) -> [NBDExtent] {
        let shift = UInt64(export.blockShift)
        return descriptors.map {
            let start = $0.startingLBA << shift
            return NBDExtent(start..<(start + UInt64($0.blockCount) << shift), isHole: $0.deallocated)
        }
    }
}

/// A read's reply buffer and the DMA buffer the controller fills for it.
struct ReadData: Sendable {
    let reply: ByteBuffer
    let buffer: DMABuffer
    let span: NBDBlockSpan
    let length: Int
    /// Bytes of reply header written ahead of the data (0: none; the data
    /// then starts on a block boundary).
    let headerLength: Int

    /// Once the DMA is over: ends the mapping and returns the request's bytes,
    /// after the reply header when one was written ahead of them (copied from
    /// the bounce pages first when the reply could not be mapped).
    func filled() -> ByteBuffer {
        var b = reply
        if buffer.isMapping {
            b.moveWriterIndex(forwardBy: span.bytes)
        } else {
            b.writeBytes(from: buffer, count: span.bytes)
        }
        buffer.release()
        // With a header, span.head is 0 and the header starts at the reader index.
        return b.getSlice(at: b.readerIndex + span.head, length: headerLength + length)!
    }
}

/// Waits for both halves of a large structured read (data and allocation map).
/// Touched only on the connection's event loop.
final class ReadJoin: @unchecked Sendable {
    var data: Result<Void, NVMeError>?
    var map: CommandExecutor.AllocationMap?
}
