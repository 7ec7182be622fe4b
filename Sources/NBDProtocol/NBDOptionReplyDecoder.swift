import NIOCore

/// Client side: decodes the server's option-haggling byte stream into
/// ``NBDOptionReply`` values.
///
/// proto.md, "Fixed newstyle negotiation" (option reply format). Replies
/// longer than `maximumLength` throw ``NBDProtocolError/replyTooLarge(_:)``.
public struct NBDOptionReplyDecoder: NIOSingleStepByteToMessageDecoder, Sendable {
    public typealias InboundOut = NBDOptionReply

    public let maximumLength: UInt32

    public init(maximumLength: UInt32 = 1 << 20) {
        self.maximumLength = maximumLength
    }

    public mutating func decode(buffer: inout ByteBuffer) throws(NBDProtocolError) -> NBDOptionReply? {
        try buffer.readNBDOptionReply(maximumLength: self.maximumLength)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws(NBDProtocolError) -> NBDOptionReply?
    {
        try self.decode(buffer: &buffer)
    }
}
