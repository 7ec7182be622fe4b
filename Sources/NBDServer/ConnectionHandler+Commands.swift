import DMA
import NBDProtocol
import NIOCore
import NVMe
import NVMeHost

/// The transmission phase: every request becomes NVMe commands (proto.md
/// "Request types"; DESIGN.md "NBD rules").
extension NBDConnectionHandler {
    private static let knownFlags: NBDCommandFlags = [.fua, .noHole, .dontFragment, .requestOne, .fastZero]

    func handle(_ message: NBDRequestDecoder.Message) {
        // proto.md: "A client MUST NOT send anything to the server after sending an
        // NBD_CMD_DISC". The decoder goes on delivering whatever followed DISC in
        // the same read (and after close() in that read); those requests used to
        // be executed, and answered whenever a request was still in flight at DISC.
        guard phase == .transmission, !disconnectRequested, !closing else { return }
        switch message {
        case .request(let request, let payload):
            // Over the limits (or behind earlier deferred requests): keep the
            // decoded request, without DMA memory or a reply, until replies drain.
            if !deferred.isEmpty || overLimits {
                deferred.append((request, payload))
            } else {
                dispatch(request, payload)
            }
        case .oversizedPayload(let request):
            // The payload is being skipped; the connection lives on.
            begin(0)
            replyStatus(request.cookie, .einval, message: "write of \(request.length) bytes exceeds the maximum payload \(export.maximumPayload)")
            end(0)
        case .unexpectedPayloadLengthFlag(let request):
            begin(0)
            replyStatus(request.cookie, .einval, message: "NBD_CMD_FLAG_PAYLOAD_LEN without extended headers")
            end(0)
        }
    }

    /// Memory a request holds while in flight: its payload or its read data.
    private func cost(_ r: NBDRequest) -> Int {
        r.type == .write || r.type == .read ? Int(r.length) : 0
    }

    /// Dispatches deferred requests while the limits allow.
    func drainDeferred() {
        while !deferred.isEmpty && !overLimits && phase == .transmission {
            // Nothing after NBD_CMD_DISC is executed (proto.md).
            if disconnectRequested {
                deferred.removeAll()
                break
            }
            let (r, payload) = deferred.removeFirst()
            dispatch(r, payload)
        }
    }

    private func dispatch(_ r: NBDRequest, _ payload: ByteBuffer?) {
        if r.type == .disconnect {
            disconnectRequested = true
            closeIfIdle()
            return
        }
        let requestCost = cost(r)
        begin(requestCost)
        // The server-wide flag is set before the listeners close; the per-connection
        // one only once beginShutdown() has hopped onto this event loop.
        if shuttingDown || server.shuttingDown.load(ordering: .relaxed) {
            replyStatus(r.cookie, .eshutdown, message: "server shutting down")
            return end(requestCost)
        }
        if let problem = validate(r) {
            replyStatus(r.cookie, problem.0, message: problem.1)
            return end(requestCost)
        }
        let stats = export.statistics
        switch r.type {
        case .read:
            stats.bump(stats.reads)
            read(r)
        case .write:
            stats.bump(stats.writes)
            write(r, payload!)
        case .flush:
            stats.bump(stats.flushes)
            queuePair.flush(deferDoorbell: inChannelRead, completion: onLoop { h, result in
                h.finish(r.cookie, result, write: true, bytes: 0)
            })
            noteSubmitted()
        case .trim:
            stats.bump(stats.trims)
            trim(r)
        case .writeZeroes:
            stats.bump(stats.writeZeroes)
            writeZeroes(r)
        case .cache:
            stats.bump(stats.caches)
            cache(r)
        case .blockStatus:
            stats.bump(stats.blockStatus)
            blockStatus(r)
        default:
            replyStatus(r.cookie, .einval, message: "unknown command \(r.type.rawValue)")
            end(0)
        }
    }

    private func noteSubmitted() {
        if inChannelRead { submittedInRead = true }
    }

    /// The errno and message for a request the server refuses before any NVMe
    /// command, or `nil` when it is acceptable.
    private func validate(_ r: NBDRequest) -> (NBDErrno, String)? {
        guard r.flags.isSubset(of: Self.knownFlags) else {
            return (.einval, "unknown command flags 0x\(String(r.flags.rawValue, radix: 16))")
        }
        var allowed: NBDCommandFlags = [.fua]
        switch r.type {
        case .read: allowed.insert(.dontFragment)
        case .writeZeroes: allowed.formUnion([.noHole, .fastZero])
        case .blockStatus: allowed.insert(.requestOne)
        case .write, .flush, .trim, .cache: break
        default: return (.einval, "unknown command \(r.type.rawValue)")
        }
        guard r.flags.isSubset(of: allowed) else {
            return (.einval, "flags 0x\(String(r.flags.rawValue, radix: 16)) are not valid for this command")
        }
        if r.flags.contains(.dontFragment) && !structuredReplies {
            return (.einval, "NBD_CMD_FLAG_DF without structured replies")
        }
        let mutating = r.type == .write || r.type == .trim || r.type == .writeZeroes
        if mutating && export.spec.readOnly {
            return (.eperm, "export is read-only")
        }
        let size = export.size
        let (end, overflow) = r.offset.addingReportingOverflow(UInt64(r.length))
        if overflow || end > size {
            let write = r.type == .write || r.type == .writeZeroes
            return (write ? .enospc : .einval, "range \(r.offset)+\(r.length) is beyond the export size \(size)")
        }
        switch r.type {
        case .read where Int(r.length) > export.maximumPayload:
            return (structuredReplies ? .eoverflow : .einval,
                    "read of \(r.length) bytes exceeds the maximum payload \(export.maximumPayload)")
        case .blockStatus where r.length == 0:
            return (.einval, "block status of length 0")
        case .blockStatus where baseAllocationContext == nil:
            return (.einval, "no metadata context negotiated (NBD_OPT_SET_META_CONTEXT base:allocation)")
        default:
            return nil
        }
    }

    /// Completes a request from an NVMe result.
    func finish(_ cookie: UInt64, _ result: Result<Void, NVMeError>, write: Bool, bytes: Int) {
        switch result {
        case .success:
            replyStatus(cookie, .success)
        case .failure(let e):
            logger.debug("request failed: \(e)")
            replyStatus(cookie, NBDErrno(e, write: write), message: e.description)
        }
        end(bytes)
    }

    // MARK: Alignment

    /// The LBA-aligned span covering `[offset, offset+length)`.
    struct Span {
        var lba: UInt64
        var blocks: Int
        /// Bytes from the span's start to `offset`.
        var head: Int
        var bytes: Int
        var aligned: Bool
    }

    func span(_ offset: UInt64, _ length: UInt64) -> Span {
        let shift = UInt64(export.blockShift)
        let mask = (UInt64(1) << shift) - 1
        let first = offset >> shift
        let last = (offset + length + mask) >> shift
        let blocks = Int(last - first)
        return Span(lba: first, blocks: blocks, head: Int(offset & mask), bytes: blocks << Int(shift),
                    aligned: offset & mask == 0 && length & mask == 0)
    }

    func dmaBuffer(_ bytes: Int, _ cookie: UInt64, _ payloadBytes: Int) -> DMABuffer? {
        if let b = DMABuffer(memory: export.memory, byteCount: bytes) { return b }
        replyStatus(cookie, .enomem, message: "no DMA memory for \(bytes) bytes")
        end(payloadBytes)
        return nil
    }

    // MARK: READ

    private func read(_ r: NBDRequest) {
        let length = Int(r.length)
        if length == 0 {
            replyStatus(r.cookie, .success)
            return end(0)
        }
        let s = span(r.offset, UInt64(r.length))
        if !s.aligned { export.statistics.bump(export.statistics.unalignedRequests) }
        // The reply's data buffer is mapped for DMA and the controller reads straight
        // into it: the only copy on this side is the socket's.
        var data = context.channel.allocator.buffer(capacity: s.bytes)
        // Unsafe: the pointer escapes the closure. `data` is held by the completion
        // below and nothing writes to it until the DMA is over, so its storage stays
        // put and alive; the mapping ends (`release`) before the bytes are used.
        let target = data.withUnsafeMutableWritableBytes { $0.baseAddress! }
        let reply = data
        // Every mapping slot in use (thousands of reads in flight): bounce through
        // arena pages and copy into the (unmapped) reply buffer at completion instead.
        let mapped = DMABuffer(memory: export.memory, mapping: target, byteCount: s.bytes)
        guard let buffer = mapped ?? dmaBuffer(s.bytes, r.cookie, length) else { return }
        let bounced = mapped == nil
        let fua = r.flags.contains(.fua)
        let wantHoles = structuredReplies && !r.flags.contains(.dontFragment) && length >= server.limits.holeDetectionThreshold
        if !wantHoles {
            queuePair.read(lba: s.lba, blocks: s.blocks, fua: fua, into: buffer, deferDoorbell: inChannelRead,
                           completion: onLoop { h, result in
                h.finishRead(r, s, filledReply(reply, buffer, bounced, s.bytes), result, map: nil)
            })
            noteSubmitted()
            return
        }
        // Large structured reads: ask for the allocation map alongside the data,
        // so deallocated ranges can be answered with OFFSET_HOLE.
        let join = ReadJoin()
        let done: @Sendable (NBDConnectionHandler) -> Void = { h in
            h.finishRead(r, s, filledReply(reply, buffer, bounced, s.bytes), join.data!, map: join.map)
        }
        queuePair.read(lba: s.lba, blocks: s.blocks, fua: fua, into: buffer, deferDoorbell: true,
                       completion: onLoop { h, result in
            join.data = result
            if join.ready { done(h) }
        })
        queuePair.allocationMap(lba: s.lba, blocks: UInt32(s.blocks), deferDoorbell: inChannelRead,
                                completion: onLoop { h, result in
            join.map = result
            if join.ready { done(h) }
        })
        noteSubmitted()
    }

    /// Sends the reply of a read whose span `s` is in `data`: one simple reply, or
    /// structured chunks (OFFSET_HOLE where the allocation map says so). Data goes
    /// out as slices of `data`, never copied.
    private func finishRead(_ r: NBDRequest, _ s: Span, _ data: ByteBuffer, _ result: Result<Void, NVMeError>,
                            map: Result<(descriptors: [AllocationMapDescriptor], nextLBA: UInt64), NVMeError>?) {
        let length = Int(r.length)
        guard case .success = result else {
            if case .failure(let e) = result { finish(r.cookie, .failure(e), write: false, bytes: length) }
            return
        }
        export.statistics.bump(export.statistics.bytesRead, by: UInt64(length))
        var header = context.channel.allocator.buffer(capacity: 64)
        if !structuredReplies {
            header.writeNBDSimpleReplyHeader(error: .success, cookie: r.cookie)
            send(header)
            send(data.getSlice(at: s.head, length: length)!)
            return end(length)
        }
        var runs: [(UInt64, UInt64, Bool)] = [(r.offset, UInt64(length), false)]
        if case .success(let m)? = map { runs = sparseRuns(r, m.descriptors) }
        for (i, run) in runs.enumerated() {
            let flags: NBDReplyFlags = i == runs.count - 1 ? .done : []
            if run.2 {
                header.writeNBDStructuredReplyChunk(NBDStructuredReplyChunk(
                    flags: flags, cookie: r.cookie, payload: .offsetHole(offset: run.0, length: UInt32(run.1))))
            } else {
                header.writeNBDOffsetDataChunkHeader(flags: flags, cookie: r.cookie, offset: run.0, dataLength: Int(run.1))
                send(header)
                header = context.channel.allocator.buffer(capacity: 64)
                send(data.getSlice(at: s.head + Int(run.0 - r.offset), length: Int(run.1))!)
            }
        }
        if header.readableBytes > 0 { send(header) }
        end(length)
    }

    /// The request's range as (offset, length, hole) runs following the
    /// allocation map, merged, covering exactly `[offset, offset+length)`.
    private func sparseRuns(_ r: NBDRequest, _ descriptors: [AllocationMapDescriptor]) -> [(UInt64, UInt64, Bool)] {
        let shift = UInt64(export.blockShift)
        let start = r.offset
        let end = r.offset + UInt64(r.length)
        var runs: [(UInt64, UInt64, Bool)] = []
        func add(_ a: UInt64, _ b: UInt64, _ hole: Bool) {
            let lo = max(a, start), hi = min(b, end)
            guard hi > lo else { return }
            if let last = runs.last, last.2 == hole, last.0 + last.1 == lo {
                runs[runs.count - 1].1 += hi - lo
            } else {
                runs.append((lo, hi - lo, hole))
            }
        }
        var covered = start
        for d in descriptors {
            let a = d.startingLBA << shift
            let b = (d.startingLBA + UInt64(d.blockCount)) << shift
            if a > covered { add(covered, a, false) }
            add(a, b, d.deallocated)
            covered = max(covered, b)
        }
        if covered < end { add(covered, end, false) }
        return runs
    }

    /// Copies `count` bytes of the DMA buffer from `offset` into `b`: the one
    /// host-side copy of read data.
    private func appendData(_ b: inout ByteBuffer, _ buffer: DMABuffer, from offset: Int, count: Int) {
        b.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { out in
            buffer.copyOut(to: UnsafeMutableRawBufferPointer(rebasing: out[0..<count]), from: offset)
            return count
        }
    }

    // MARK: WRITE

    private func write(_ r: NBDRequest, _ payload: ByteBuffer) {
        let length = Int(r.length)
        if length == 0 {
            replyStatus(r.cookie, .success)
            return end(0)
        }
        let s = span(r.offset, UInt64(r.length))
        let fua = r.flags.contains(.fua)
        if s.aligned {
            // The payload is mapped for DMA where it lies in the receive buffer (the
            // controller reads it from there), unless it is not dword aligned, as
            // PRP1 must be; then it is copied into arena pages.
            // Unsafe: the pointer escapes the closure; `payload` is held by the
            // completion and never written, so its bytes stay put until the mapping
            // ends.
            let source = payload.withUnsafeReadableBytes { UnsafeMutableRawPointer(mutating: $0.baseAddress!) }
            var mapped: DMABuffer? = nil
            if Int(bitPattern: source) & 3 == 0 {
                mapped = DMABuffer(memory: export.memory, mapping: source, byteCount: length)
            }
            if mapped == nil {
                mapped = dmaBuffer(s.bytes, r.cookie, length)
                payload.withUnsafeReadableBytes { mapped?.copyIn(from: $0) }
            }
            guard let buffer = mapped else { return }
            queuePair.write(lba: s.lba, blocks: s.blocks, fua: fua, from: buffer, deferDoorbell: inChannelRead,
                            completion: onLoop { h, result in
                buffer.release()
                _ = payload
                if case .success = result { h.export.statistics.bump(h.export.statistics.bytesWritten, by: UInt64(length)) }
                h.finish(r.cookie, result, write: true, bytes: length)
            })
            noteSubmitted()
            return
        }
        export.statistics.bump(export.statistics.unalignedRequests)
        guard let buffer = dmaBuffer(s.bytes, r.cookie, length) else { return }
        readModifyWrite(s, gate: export.rmwGate, queuePair: queuePair, fua: fua, fill: { buffer in
            payload.withUnsafeReadableBytes { buffer.copyIn(from: $0, at: s.head) }
        }, buffer: buffer, completion: onLoop { h, result in
            if case .success = result { h.export.statistics.bump(h.export.statistics.bytesWritten, by: UInt64(length)) }
            h.finish(r.cookie, result, write: true, bytes: length)
        })
    }

    // MARK: TRIM, WRITE_ZEROES, CACHE

    /// TRIM deallocates the whole blocks inside the range (a hint: partial blocks
    /// at the edges are left alone, as the spec allows).
    private func trim(_ r: NBDRequest) {
        let shift = UInt64(export.blockShift)
        let mask = (UInt64(1) << shift) - 1
        let first = (r.offset + mask) >> shift
        let last = (r.offset + UInt64(r.length)) >> shift
        let fua = r.flags.contains(.fua)
        guard last > first else {
            replyStatus(r.cookie, .success)
            return end(0)
        }
        let qp = queuePair!
        queuePair.deallocate(ranges: [(first, last - first)], deferDoorbell: inChannelRead, completion: onLoop { h, result in
            if fua, case .success = result {
                qp.flush(completion: h.onLoop { h, flushed in h.finish(r.cookie, flushed, write: true, bytes: 0) })
            } else {
                h.finish(r.cookie, result, write: true, bytes: 0)
            }
        })
        noteSubmitted()
    }

    /// WRITE_ZEROES: Write Zeroes (with Deallocate unless NO_HOLE) for the whole
    /// blocks, read-modify-write of zeroes for partial blocks at the edges. With
    /// FAST_ZERO the whole blocks are zeroed only if the storage can without
    /// writing zeroes, else the request fails at once with ENOTSUP (proto.md
    /// `NBD_CMD_FLAG_FAST_ZERO`); the edges, at most two partial blocks, are
    /// always written.
    private func writeZeroes(_ r: NBDRequest) {
        if r.length == 0 {
            replyStatus(r.cookie, .success)
            return end(0)
        }
        let shift = UInt64(export.blockShift)
        let mask = (UInt64(1) << shift) - 1
        let start = r.offset, stop = r.offset + UInt64(r.length)
        let alignedStart = (start + mask) & ~mask
        let alignedStop = stop & ~mask
        let fua = r.flags.contains(.fua)
        let deallocate = !r.flags.contains(.noHole)
        let fastOnly = r.flags.contains(.fastZero)
        let qp = queuePair!
        let memory = export.memory
        let gate = export.rmwGate
        var steps: [@Sendable (@escaping @Sendable (Result<Void, NVMeError>) -> Void) -> Void] = []
        func partial(_ a: UInt64, _ b: UInt64) {
            let s = span(a, b - a)
            steps.append { done in
                zeroPartial(s, length: Int(b - a), memory: memory, gate: gate, queuePair: qp, fua: fua, done)
            }
        }
        if alignedStart >= alignedStop {
            partial(start, stop)
        } else {
                // The fast part first: a FAST_ZERO the storage cannot do fast fails
            // before any edge is written.
            steps.append { done in
                qp.writeZeroes(lba: alignedStart >> shift, blocks: (alignedStop - alignedStart) >> shift,
                               deallocate: deallocate, fua: fua, fastOnly: fastOnly, completion: done)
            }
            if start < alignedStart { partial(start, alignedStart) }
            if alignedStop < stop { partial(alignedStop, stop) }
        }
        if start & mask != 0 || stop & mask != 0 { export.statistics.bump(export.statistics.unalignedRequests) }
        runSequentially(steps, completion: onLoop { h, result in h.finish(r.cookie, result, write: true, bytes: 0) })
    }

    /// CACHE: reads the range through the controller (NVMe has no prefetch), in
    /// MDTS-sized pieces through one reused buffer.
    private func cache(_ r: NBDRequest) {
        if r.length == 0 {
            replyStatus(r.cookie, .success)
            return end(0)
        }
        let s = span(r.offset, UInt64(r.length))
        let chunkBlocks = max(1, queuePair.limits.maximumBlocks(export.namespace))
        guard let buffer = dmaBuffer(min(s.bytes, chunkBlocks << export.blockShift), r.cookie, 0) else { return }
        let qp = queuePair!
        var steps: [@Sendable (@escaping @Sendable (Result<Void, NVMeError>) -> Void) -> Void] = []
        var lba = s.lba
        var left = s.blocks
        while left > 0 {
            let n = min(left, chunkBlocks)
            let at = lba
            steps.append { done in qp.read(lba: at, blocks: n, into: buffer, completion: done) }
            lba += UInt64(n)
            left -= n
        }
        runSequentially(steps, completion: onLoop { h, result in
            buffer.release()
            h.finish(r.cookie, result, write: false, bytes: 0)
        })
    }

    // MARK: BLOCK_STATUS

    private func blockStatus(_ r: NBDRequest) {
        let s = span(r.offset, UInt64(r.length))
        let reqOne = r.flags.contains(.requestOne)
        let context = baseAllocationContext!
        queuePair.allocationMap(lba: s.lba, blocks: UInt32(min(s.blocks, Int(UInt32.max))), deferDoorbell: inChannelRead,
                                completion: onLoop { h, result in
            switch result {
            case .failure(let e):
                h.finish(r.cookie, .failure(e), write: false, bytes: 0)
            case .success(let m):
                h.sendBlockStatus(r, s, context, m.descriptors, reqOne: reqOne)
            }
        })
        noteSubmitted()
    }

    private func sendBlockStatus(_ r: NBDRequest, _ s: Span, _ contextID: UInt32,
                                 _ descriptors: [AllocationMapDescriptor], reqOne: Bool) {
        let shift = UInt64(export.blockShift)
        var out: [NBDBlockStatusDescriptor] = []
        var position = r.offset
        let maxLength = UInt64(UInt32.max) & ~((UInt64(1) << shift) - 1)
        for d in descriptors {
            let a = max(d.startingLBA << shift, position)
            // The last block may reach past the end of an export whose size is not
            // a whole number of blocks: extents stop at the end.
            let b = min((d.startingLBA + UInt64(d.blockCount)) << shift, export.size)
            guard b > a else { continue }
            let state: NBDAllocationState = d.deallocated ? [.hole, .zero] : []
            let length = min(b - a, maxLength)
            if let last = out.last, last.flags == state.rawValue, UInt64(last.length) + length <= maxLength {
                out[out.count - 1].length += UInt32(length)
            } else {
                out.append(NBDBlockStatusDescriptor(length: UInt32(length), state: state))
            }
            position = a + length
            if length < b - a { break }
            if reqOne && !out.isEmpty { break }
        }
        guard !out.isEmpty else {
            replyStatus(r.cookie, .eio, message: "empty allocation map")
            return end(0)
        }
        if reqOne {
            // proto.md: with REQ_ONE the one descriptor "MUST NOT be greater than the
            // length of the request". The allocation map covers whole blocks, so a
            // request ending inside a block used to get an extent reaching the
            // block's end (libnbd does not catch it). The descriptor starts at
            // r.offset, so clipping it to r.length is enough.
            out = [out[0]]
            out[0].length = UInt32(min(UInt64(out[0].length), UInt64(r.length)))
        }
        var b = context.channel.allocator.buffer(capacity: 32 + 8 * out.count)
        b.writeNBDStructuredReplyChunk(NBDStructuredReplyChunk(flags: .done, cookie: r.cookie,
                                                               payload: .blockStatus(contextID: contextID, descriptors: out)))
        send(b)
        end(0)
    }
}

/// Waits for both halves of a large structured read (data and allocation map).
/// Touched only on the connection's event loop.
final class ReadJoin: @unchecked Sendable {
    var data: Result<Void, NVMeError>?
    var map: Result<(descriptors: [AllocationMapDescriptor], nextLBA: UInt64), NVMeError>?
    var ready: Bool { data != nil && map != nil }
}

/// Reads the whole span, lets `fill` change it, writes it back — under the
/// export's read-modify-write gate so partial-block writes do not lose each
/// other's bytes. Releases `buffer` when done.
func readModifyWrite(_ s: NBDConnectionHandler.Span, gate: RMWGate, queuePair qp: QueuePair, fua: Bool,
                     fill: @escaping @Sendable (DMABuffer) -> Void, buffer: DMABuffer,
                     completion: @escaping @Sendable (Result<Void, NVMeError>) -> Void) {
    gate.acquire {
        qp.read(lba: s.lba, blocks: s.blocks, into: buffer) { result in
            if case .failure = result {
                buffer.release()
                gate.release()
                return completion(result)
            }
            fill(buffer)
            qp.write(lba: s.lba, blocks: s.blocks, fua: fua, from: buffer) { result in
                buffer.release()
                gate.release()
                completion(result)
            }
        }
    }
}

/// Zeroes `length` bytes from the start offset of `s` by read-modify-write.
func zeroPartial(_ s: NBDConnectionHandler.Span, length: Int, memory: HostMemory, gate: RMWGate, queuePair: QueuePair,
                 fua: Bool, _ done: @escaping @Sendable (Result<Void, NVMeError>) -> Void) {
    guard let buffer = DMABuffer(memory: memory, byteCount: s.bytes) else {
        return done(.failure(NVMeError(.outOfDMAMemory(bytes: s.bytes), operation: "write zeroes")))
    }
    let head = s.head
    readModifyWrite(s, gate: gate, queuePair: queuePair, fua: fua, fill: { b in
        let zeroes = [UInt8](repeating: 0, count: length)
        zeroes.withUnsafeBytes { b.copyIn(from: $0, at: head) }
    }, buffer: buffer, completion: done)
}

/// A read reply buffer once the DMA into it is over: the mapping ends, and the
/// bytes become readable (copied from the bounce pages first when the reply
/// could not be mapped).
func filledReply(_ reply: ByteBuffer, _ buffer: DMABuffer, _ bounced: Bool, _ count: Int) -> ByteBuffer {
    var filled = reply
    if bounced {
        filled.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { out in
            buffer.copyOut(to: UnsafeMutableRawBufferPointer(rebasing: out[0..<count]))
            return count
        }
    } else {
        filled.moveWriterIndex(forwardBy: count)
    }
    buffer.release()
    return filled
}

/// Runs asynchronous steps one after another; stops at the first failure.
func runSequentially(_ steps: [@Sendable (@escaping @Sendable (Result<Void, NVMeError>) -> Void) -> Void],
                     completion: @escaping @Sendable (Result<Void, NVMeError>) -> Void) {
    guard let first = steps.first else { return completion(.success(())) }
    let rest = Array(steps.dropFirst())
    first { result in
        if case .failure = result { return completion(result) }
        runSequentially(rest, completion: completion)
    }
}
