import NIOCore

/// A fixed-newstyle option reply.
///
/// proto.md, "Fixed newstyle negotiation":
///
///     S: 64 bits, 0x3e889045565a9 (magic number for replies)
///     S: 32 bits, the option as sent by the client to which this is a reply
///     S: 32 bits, reply type (e.g., NBD_REP_ACK …)
///     S: 32 bits, length of the reply. This MAY be zero …
///     S: any data as required by the reply
///
/// and "Option reply types" for the data layouts, which the accessors parse.
public struct NBDOptionReply: Hashable, Sendable {
    /// The size of the reply header in bytes.
    public static let headerSize = 20

    public var option: NBDOption
    public var type: NBDOptionReplyType
    public var data: ByteBuffer

    public init(option: NBDOption, type: NBDOptionReplyType, data: ByteBuffer = ByteBuffer()) {
        self.option = option
        self.type = type
        self.data = data
    }

    /// `NBD_REP_ACK` to `option`.
    public static func ack(_ option: NBDOption) -> NBDOptionReply {
        NBDOptionReply(option: option, type: .ack)
    }

    /// An error reply to `option` with an optional message (error replies MAY carry
    /// a string for display to the user).
    public static func error(_ type: NBDOptionReplyType, to option: NBDOption, message: String = "") -> NBDOptionReply {
        precondition(type.isError, "\(type) is not an error reply type")
        return NBDOptionReply(option: option, type: type, data: ByteBuffer(string: message))
    }

    /// `NBD_REP_SERVER`: 32 bits name length, name, then implementation details (here a description).
    public static func server(name: String, details: String = "") -> NBDOptionReply {
        var data = ByteBuffer()
        data.writeInteger(UInt32(name.utf8.count))
        data.writeString(name)
        data.writeString(details)
        return NBDOptionReply(option: .list, type: .server, data: data)
    }

    /// `NBD_REP_INFO` to `option` (`NBD_OPT_INFO` or `NBD_OPT_GO`).
    public static func info(_ info: NBDInfo, to option: NBDOption) -> NBDOptionReply {
        var data = ByteBuffer()
        data.writeNBDInfo(info)
        return NBDOptionReply(option: option, type: .info, data: data)
    }

    /// `NBD_REP_META_CONTEXT` to `option`: 32 bits context id, then the name.
    public static func metaContext(_ context: NBDMetaContext, to option: NBDOption) -> NBDOptionReply {
        var data = ByteBuffer()
        data.writeInteger(context.id)
        data.writeString(context.name)
        return NBDOptionReply(option: option, type: .metaContext, data: data)
    }

    /// The information item of an `NBD_REP_INFO`, or `nil`.
    public var info: NBDInfo? {
        guard self.type == .info else { return nil }
        var data = self.data
        return data.readNBDInfo()
    }

    /// The export name and details of an `NBD_REP_SERVER`, or `nil`.
    public var server: (name: String, details: String)? {
        guard self.type == .server else { return nil }
        var data = self.data
        guard let length = data.readInteger(as: UInt32.self), Int(length) <= data.readableBytes,
            let name = data.readString(length: Int(length))
        else { return nil }
        return (name, data.readString(length: data.readableBytes)!)
    }

    /// The context of an `NBD_REP_META_CONTEXT`, or `nil`.
    public var metaContext: NBDMetaContext? {
        guard self.type == .metaContext else { return nil }
        var data = self.data
        guard let id = data.readInteger(as: UInt32.self) else { return nil }
        return NBDMetaContext(id: id, name: data.readString(length: data.readableBytes)!)
    }

    /// The message of an error reply, or `nil` for a non-error reply.
    public var errorMessage: String? {
        guard self.type.isError else { return nil }
        return String(buffer: self.data)
    }
}

extension ByteBuffer {
    /// Writes an option reply header announcing `length` bytes of data.
    @discardableResult
    public mutating func writeNBDOptionReplyHeader(option: NBDOption, type: NBDOptionReplyType, length: UInt32) -> Int {
        self.writeMultipleIntegers(NBDMagic.optionReply, option.rawValue, type.rawValue, length)
    }

    /// Writes an option reply: header then data.
    @discardableResult
    public mutating func writeNBDOptionReply(_ reply: NBDOptionReply) -> Int {
        self.writeNBDOptionReplyHeader(option: reply.option, type: reply.type, length: UInt32(reply.data.readableBytes))
            + self.writeImmutableBuffer(reply.data)
    }

    /// Client side: reads one complete option reply, or returns `nil` without
    /// consuming anything if it is not all there yet.
    public mutating func readNBDOptionReply(maximumLength: UInt32 = UInt32.max) throws(NBDProtocolError)
        -> NBDOptionReply?
    {
        guard
            let (magic, option, type, length) = self.getMultipleIntegers(
                at: self.readerIndex, as: (UInt64, UInt32, UInt32, UInt32).self)
        else { return nil }
        guard magic == NBDMagic.optionReply else { throw .badOptionReplyMagic(magic) }
        guard length <= maximumLength else { throw .replyTooLarge(length) }
        guard self.readableBytes >= NBDOptionReply.headerSize + Int(length) else { return nil }
        self.moveReaderIndex(forwardBy: NBDOptionReply.headerSize)
        let data = self.readSlice(length: Int(length))!
        return NBDOptionReply(
            option: NBDOption(rawValue: option), type: NBDOptionReplyType(rawValue: type), data: data)
    }
}
