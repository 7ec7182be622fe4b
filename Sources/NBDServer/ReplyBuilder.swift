import NBDProtocol
import NIOCore

/// Builds the replies of one connection in the style the handshake negotiated:
/// simple replies, or structured reply chunks (proto.md "Simple reply message",
/// "Structured reply chunk message").
struct ReplyBuilder {
    let structured: Bool
    let allocator: ByteBufferAllocator

    /// A reply with no data, success or error. Error messages are cut to
    /// 4 KiB (proto.md: a server SHOULD keep them short).
    func status(_ cookie: UInt64, _ error: NBDErrno, message: String = "") -> ByteBuffer {
        var b = allocator.buffer(capacity: 64)
        if !structured {
            b.writeNBDSimpleReplyHeader(error: error, cookie: cookie)
        } else if error == .success {
            b.writeNBDStructuredReplyChunk(NBDStructuredReplyChunk(flags: .done, cookie: cookie, payload: .none))
        } else {
            let text = String(message.utf8.prefix(4096)) ?? ""
            b.writeNBDStructuredReplyChunk(
                NBDStructuredReplyChunk(
                    flags: .done, cookie: cookie,
                    payload: .error(error, message: text)))
        }
        return b
    }

    /// The successful reply to a read of `data` at `offset`, as header buffers
    /// and slices of `data` (never copied), in the order they go out: a simple
    /// reply, or one chunk per run (`OFFSET_HOLE` for holes, `OFFSET_DATA`
    /// otherwise), the last one flagged done. `data` starts at `offset`.
    func read(_ cookie: UInt64, offset: UInt64, data: ByteBuffer, runs: [NBDExtent], _ emit: (ByteBuffer) -> Void) {
        var header = allocator.buffer(capacity: 64)
        guard structured else {
            header.writeNBDSimpleReplyHeader(error: .success, cookie: cookie)
            emit(header)
            emit(data)
            return
        }
        for (i, run) in runs.enumerated() {
            let flags: NBDReplyFlags = i == runs.count - 1 ? .done : []
            if run.isHole {
                header.writeNBDStructuredReplyChunk(
                    NBDStructuredReplyChunk(
                        flags: flags, cookie: cookie,
                        payload: .offsetHole(offset: run.offset, length: UInt32(run.length))))
            } else {
                header.writeNBDOffsetDataChunkHeader(
                    flags: flags, cookie: cookie, offset: run.offset,
                    dataLength: Int(run.length))
                emit(header)
                header = allocator.buffer(capacity: 64)
                emit(data.getSlice(at: data.readerIndex + Int(run.offset - offset), length: Int(run.length))!)
            }
        }
        if header.readableBytes > 0 { emit(header) }
    }

    /// Capacity reserved for the header ``writeReadHeader(_:offset:length:into:)``
    /// writes (16 bytes simple, 28 structured); the data follows the header
    /// directly, at a dword-aligned offset as a PRP entry needs.
    static let readHeaderRoom = 32
    /// The largest read whose reply header goes into its data buffer.
    static let headerFirstLimit = 32 << 10

    /// Writes the header of a successful read reply that goes out in one piece —
    /// a simple reply, or a single `OFFSET_DATA` chunk flagged done — so that the
    /// `length` bytes of data can follow in the same buffer. Returns its size.
    @discardableResult
    func writeReadHeader(_ cookie: UInt64, offset: UInt64, length: Int, into b: inout ByteBuffer) -> Int {
        guard structured else { return b.writeNBDSimpleReplyHeader(error: .success, cookie: cookie) }
        return b.writeNBDOffsetDataChunkHeader(flags: .done, cookie: cookie, offset: offset, dataLength: length)
    }

    /// An `NBD_REPLY_TYPE_BLOCK_STATUS` chunk (structured replies only).
    func blockStatus(_ cookie: UInt64, contextID: UInt32, _ descriptors: [NBDBlockStatusDescriptor]) -> ByteBuffer {
        var b = allocator.buffer(capacity: 32 + 8 * descriptors.count)
        b.writeNBDStructuredReplyChunk(
            NBDStructuredReplyChunk(
                flags: .done, cookie: cookie, payload: .blockStatus(contextID: contextID, descriptors: descriptors)))
        return b
    }
}
