import NIOCore

/// Client side: decodes the server's transmission-phase byte stream into
/// simple replies and structured reply chunks.
///
/// proto.md, "Simple reply message", "Structured reply chunk message" and
/// "Structured reply types". Structured chunks are self-describing. A simple
/// reply is not: whether data follows, and how much, depends on the request
/// (a successful `NBD_CMD_READ` carries *length* bytes). The decoder therefore
/// asks `simpleReplyDataLength` for the cookie of every simple reply with a
/// zero error; it returns the number of data bytes to expect (0 for none).
///
/// Chunk payloads are validated against the length rules of their type;
/// a violation throws ``NBDProtocolError/malformedReplyChunk(_:length:)`` (the
/// client MUST then initiate a hard disconnect). Unknown chunk types are
/// delivered as ``NBDStructuredReplyChunk/Payload/unknown(_:payload:)``.
public struct NBDReplyDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = NBDReply

    private let simpleReplyDataLength: (UInt64) -> Int
    private let maximumPayload: UInt32
    private var pendingSimpleReply: NBDSimpleReply?

    /// - Parameters:
    ///   - maximumPayload: the largest chunk payload or read data accepted.
    ///   - simpleReplyDataLength: the data length that follows a successful
    ///     simple reply with this cookie (the length of a pending `NBD_CMD_READ`, else 0).
    public init(
        maximumPayload: UInt32 = UInt32(NBDLimits.defaultMaximumPayload) + 4096,
        simpleReplyDataLength: @escaping (_ cookie: UInt64) -> Int
    ) {
        self.maximumPayload = maximumPayload
        self.simpleReplyDataLength = simpleReplyDataLength
    }

    /// A decoder for a client whose pending reads are given by cookie.
    public init(readLengths: [UInt64: Int]) {
        self.init(simpleReplyDataLength: { readLengths[$0] ?? 0 })
    }

    public mutating func decode(buffer: inout ByteBuffer) throws(NBDProtocolError) -> NBDReply? {
        if let pending = self.pendingSimpleReply {
            return self.finishSimpleReply(pending, buffer: &buffer)
        }
        guard let magic = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        switch magic {
        case NBDMagic.simpleReply:
            guard let (_, error, cookie) = buffer.readMultipleIntegers(as: (UInt32, UInt32, UInt64).self) else {
                return nil
            }
            let reply = NBDSimpleReply(error: NBDErrno(rawValue: error), cookie: cookie)
            return self.finishSimpleReply(reply, buffer: &buffer)
        case NBDMagic.structuredReply:
            return try Self.readStructuredChunk(from: &buffer, maximumPayload: self.maximumPayload).map {
                .structured($0)
            }
        default:
            throw .badReplyMagic(magic)
        }
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws(NBDProtocolError) -> NBDReply? {
        try self.decode(buffer: &buffer)
    }

    private mutating func finishSimpleReply(_ reply: NBDSimpleReply, buffer: inout ByteBuffer) -> NBDReply? {
        let length = reply.error == .success ? self.simpleReplyDataLength(reply.cookie) : 0
        guard length > 0 else {
            self.pendingSimpleReply = nil
            return .simple(reply)
        }
        guard let data = buffer.readSlice(length: length) else {
            self.pendingSimpleReply = reply
            return nil
        }
        self.pendingSimpleReply = nil
        var reply = reply
        reply.data = data
        return .simple(reply)
    }

    /// Reads one complete structured reply chunk (header and payload), or
    /// returns `nil` without consuming anything if it is not all there yet.
    static func readStructuredChunk(
        from buffer: inout ByteBuffer, maximumPayload: UInt32
    ) throws(NBDProtocolError) -> NBDStructuredReplyChunk? {
        guard
            let (_, flags, rawType, cookie, length) = buffer.getMultipleIntegers(
                at: buffer.readerIndex, as: (UInt32, UInt16, UInt16, UInt64, UInt32).self)
        else { return nil }
        guard length <= maximumPayload else { throw .replyTooLarge(length) }
        guard buffer.readableBytes >= NBDStructuredReplyChunk.headerSize + Int(length) else { return nil }
        let type = NBDReplyType(rawValue: rawType)
        var payload = buffer.getSlice(at: buffer.readerIndex + NBDStructuredReplyChunk.headerSize, length: Int(length))!
        let decoded = try Self.parsePayload(type: type, length: length, payload: &payload)
        buffer.moveReaderIndex(forwardBy: NBDStructuredReplyChunk.headerSize + Int(length))
        return NBDStructuredReplyChunk(flags: NBDReplyFlags(rawValue: flags), cookie: cookie, payload: decoded)
    }

    private static func parsePayload(
        type: NBDReplyType, length: UInt32, payload: inout ByteBuffer
    ) throws(NBDProtocolError) -> NBDStructuredReplyChunk.Payload {
        let malformed = NBDProtocolError.malformedReplyChunk(type, length: length)
        switch type {
        case .none:
            guard length == 0 else { throw malformed }
            return .none
        case .offsetData:
            guard length >= 9, let offset = payload.readInteger(as: UInt64.self) else { throw malformed }
            return .offsetData(offset: offset, data: payload)
        case .offsetHole:
            guard length == 12, let (offset, holeLength) = payload.readMultipleIntegers(as: (UInt64, UInt32).self)
            else { throw malformed }
            return .offsetHole(offset: offset, length: holeLength)
        case .blockStatus:
            guard length >= 12, (length - 4) % 8 == 0, let contextID = payload.readInteger(as: UInt32.self)
            else { throw malformed }
            var descriptors: [NBDBlockStatusDescriptor] = []
            descriptors.reserveCapacity(Int(length - 4) / 8)
            while let (extentLength, flags) = payload.readMultipleIntegers(as: (UInt32, UInt32).self) {
                descriptors.append(NBDBlockStatusDescriptor(length: extentLength, flags: flags))
            }
            return .blockStatus(contextID: contextID, descriptors: descriptors)
        case .error:
            guard let (error, message) = Self.readErrorPrefix(&payload) else { throw malformed }
            return .error(error, message: message)
        case .errorOffset:
            guard let (error, message) = Self.readErrorPrefix(&payload),
                let offset = payload.readInteger(as: UInt64.self)
            else { throw malformed }
            return .errorOffset(error, message: message, offset: offset)
        default:
            return .unknown(type, payload: payload)
        }
    }

    private static func readErrorPrefix(_ payload: inout ByteBuffer) -> (NBDErrno, String)? {
        guard let (error, count) = payload.readMultipleIntegers(as: (UInt32, UInt16).self),
            let message = payload.readString(length: Int(count))
        else { return nil }
        return (NBDErrno(rawValue: error), message)
    }
}
