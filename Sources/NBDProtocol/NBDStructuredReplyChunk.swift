import NIOCore

/// One chunk of a structured reply.
///
/// proto.md, "Transmission" → "Structured reply chunk message":
///
///     S: 32 bits, 0x668e33ef, magic (NBD_STRUCTURED_REPLY_MAGIC)
///     S: 16 bits, flags
///     S: 16 bits, type
///     S: 64 bits, cookie
///     S: 32 bits, length of payload (unsigned)
///     S: length bytes of payload data (if length is nonzero)
///
/// and "Structured reply types" for the payloads. To avoid copying read data,
/// write only the header of an `NBD_REPLY_TYPE_OFFSET_DATA` chunk with
/// `ByteBuffer.writeNBDOffsetDataChunkHeader(flags:cookie:offset:dataLength:)`
/// and append the data yourself.
public struct NBDStructuredReplyChunk: Hashable, Sendable {
    /// The size of the encoded chunk header in bytes.
    public static let headerSize = 20

    /// The payload of a chunk, by chunk type.
    public enum Payload: Hashable, Sendable {
        /// `NBD_REPLY_TYPE_NONE`: no payload (MUST come with `NBD_REPLY_FLAG_DONE`).
        case none
        /// `NBD_REPLY_TYPE_OFFSET_DATA`: data read at `offset` (at least one byte).
        case offsetData(offset: UInt64, data: ByteBuffer)
        /// `NBD_REPLY_TYPE_OFFSET_HOLE`: `length` bytes at `offset` read as zeroes.
        case offsetHole(offset: UInt64, length: UInt32)
        /// `NBD_REPLY_TYPE_BLOCK_STATUS`: extents for one metadata context (at least one).
        case blockStatus(contextID: UInt32, descriptors: [NBDBlockStatusDescriptor])
        /// `NBD_REPLY_TYPE_ERROR`: a nonzero error and an optional message.
        case error(NBDErrno, message: String)
        /// `NBD_REPLY_TYPE_ERROR_OFFSET`: a nonzero error at `offset` and an optional message.
        case errorOffset(NBDErrno, message: String, offset: UInt64)
        /// Any other chunk type, with its raw payload (client side only).
        case unknown(NBDReplyType, payload: ByteBuffer)

        /// The chunk type of this payload.
        public var type: NBDReplyType {
            switch self {
            case .none: .none
            case .offsetData: .offsetData
            case .offsetHole: .offsetHole
            case .blockStatus: .blockStatus
            case .error: .error
            case .errorOffset: .errorOffset
            case .unknown(let type, _): type
            }
        }

        /// The length of the encoded payload in bytes.
        public var length: Int {
            switch self {
            case .none: 0
            case .offsetData(_, let data): 8 + data.readableBytes
            case .offsetHole: 12
            case .blockStatus(_, let descriptors): 4 + NBDBlockStatusDescriptor.size * descriptors.count
            case .error(_, let message): 6 + message.utf8.count
            case .errorOffset(_, let message, _): 14 + message.utf8.count
            case .unknown(_, let payload): payload.readableBytes
            }
        }
    }

    public var flags: NBDReplyFlags
    public var cookie: UInt64
    public var payload: Payload

    public init(flags: NBDReplyFlags = [], cookie: UInt64, payload: Payload) {
        self.flags = flags
        self.cookie = cookie
        self.payload = payload
    }

    /// Whether this is the final chunk of its reply.
    public var isDone: Bool { self.flags.contains(.done) }
}

extension ByteBuffer {
    /// Writes a 20-byte structured reply chunk header; the caller writes `length` payload bytes next.
    @discardableResult
    public mutating func writeNBDStructuredReplyChunkHeader(
        flags: NBDReplyFlags, type: NBDReplyType, cookie: UInt64, length: UInt32
    ) -> Int {
        self.writeMultipleIntegers(NBDMagic.structuredReply, flags.rawValue, type.rawValue, cookie, length)
    }

    /// Writes the header of an `NBD_REPLY_TYPE_OFFSET_DATA` chunk including its
    /// 8-byte offset (28 bytes in all); the caller appends exactly `dataLength`
    /// bytes of data next, without an intermediate copy.
    ///
    /// - Precondition: `1 <= dataLength <= 2^32 − 9` (the chunk length is `dataLength + 8`).
    @discardableResult
    public mutating func writeNBDOffsetDataChunkHeader(
        flags: NBDReplyFlags = [], cookie: UInt64, offset: UInt64, dataLength: Int
    ) -> Int {
        precondition(dataLength >= 1 && dataLength <= Int(UInt32.max) - 8, "invalid OFFSET_DATA length \(dataLength)")
        return self.writeNBDStructuredReplyChunkHeader(
            flags: flags, type: .offsetData, cookie: cookie, length: UInt32(dataLength + 8))
            + self.writeInteger(offset)
    }

    /// Writes a complete structured reply chunk.
    ///
    /// - Precondition: the payload obeys its type's rules: `OFFSET_DATA` carries
    ///   at least one byte, `BLOCK_STATUS` at least one descriptor, error chunks a
    ///   nonzero error and a message of at most 4096 bytes (proto.md string rule),
    ///   `NONE` comes with `NBD_REPLY_FLAG_DONE`; the payload fits the 32-bit length.
    @discardableResult
    public mutating func writeNBDStructuredReplyChunk(_ chunk: NBDStructuredReplyChunk) -> Int {
        let length = chunk.payload.length
        precondition(length <= Int(UInt32.max), "structured reply payload too long")
        self.reserveCapacity(minimumWritableBytes: NBDStructuredReplyChunk.headerSize + length)
        var written = self.writeNBDStructuredReplyChunkHeader(
            flags: chunk.flags, type: chunk.payload.type, cookie: chunk.cookie, length: UInt32(length))
        switch chunk.payload {
        case .none:
            precondition(chunk.isDone, "NBD_REPLY_TYPE_NONE MUST have NBD_REPLY_FLAG_DONE set")
        case .offsetData(let offset, let data):
            precondition(data.readableBytes > 0, "NBD_REPLY_TYPE_OFFSET_DATA MUST carry at least one byte")
            written += self.writeInteger(offset)
            written += self.writeImmutableBuffer(data)
        case .offsetHole(let offset, let holeLength):
            written += self.writeMultipleIntegers(offset, holeLength)
        case .blockStatus(let contextID, let descriptors):
            precondition(!descriptors.isEmpty, "NBD_REPLY_TYPE_BLOCK_STATUS MUST carry at least one descriptor")
            written += self.writeInteger(contextID)
            for descriptor in descriptors {
                written += self.writeMultipleIntegers(descriptor.length, descriptor.flags)
            }
        case .error(let error, let message):
            written += self.writeNBDErrorPrefix(error, message: message)
        case .errorOffset(let error, let message, let offset):
            written += self.writeNBDErrorPrefix(error, message: message)
            written += self.writeInteger(offset)
        case .unknown(_, let payload):
            written += self.writeImmutableBuffer(payload)
        }
        return written
    }

    private mutating func writeNBDErrorPrefix(_ error: NBDErrno, message: String) -> Int {
        let count = message.utf8.count
        precondition(error != .success, "an error chunk MUST carry a nonzero error")
        precondition(count <= NBDLimits.maximumStringLength, "error message longer than 4096 bytes")
        return self.writeMultipleIntegers(error.rawValue, UInt16(count)) + self.writeString(message)
    }
}
