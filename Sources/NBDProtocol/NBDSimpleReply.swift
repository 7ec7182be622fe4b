import NIOCore

/// A simple reply, optionally followed by the data of an `NBD_CMD_READ`.
///
/// proto.md, "Transmission" → "Simple reply message":
///
///     S: 32 bits, 0x67446698, magic (NBD_SIMPLE_REPLY_MAGIC)
///     S: 32 bits, error (MAY be zero)
///     S: 64 bits, cookie
///     S: (length bytes of data if the request is of type NBD_CMD_READ and error is zero)
///
/// The length of the data is not on the wire: it is the length of the request.
/// To avoid a copy, write only the header with
/// `ByteBuffer.writeNBDSimpleReplyHeader(error:cookie:)` and append the data yourself.
public struct NBDSimpleReply: Hashable, Sendable {
    /// The size of the encoded header in bytes.
    public static let headerSize = 16

    public var error: NBDErrno
    public var cookie: UInt64
    /// The read data; `nil` for every reply but a successful `NBD_CMD_READ`.
    public var data: ByteBuffer?

    public init(error: NBDErrno = .success, cookie: UInt64, data: ByteBuffer? = nil) {
        self.error = error
        self.cookie = cookie
        self.data = data
    }
}

extension ByteBuffer {
    /// Writes only the 16-byte simple reply header, so that read data can be
    /// appended separately (for example copied straight from DMA pages).
    @discardableResult
    public mutating func writeNBDSimpleReplyHeader(error: NBDErrno = .success, cookie: UInt64) -> Int {
        self.writeMultipleIntegers(NBDMagic.simpleReply, error.rawValue, cookie)
    }

    /// Writes a simple reply: the header then the data, if any.
    @discardableResult
    public mutating func writeNBDSimpleReply(_ reply: NBDSimpleReply) -> Int {
        var written = self.writeNBDSimpleReplyHeader(error: reply.error, cookie: reply.cookie)
        if let data = reply.data {
            written += self.writeImmutableBuffer(data)
        }
        return written
    }
}
