/// A violation of the NBD wire format that makes the byte stream impossible
/// to follow any further: the connection has to be closed.
///
/// Thrown by the decoders in this module. Recoverable problems (an oversized
/// `NBD_CMD_WRITE`, an unexpected command flag) are reported as decoder
/// outputs instead, so that the server can answer them and carry on.
public enum NBDProtocolError: Error, Hashable, Sendable {
    /// A request did not start with `NBD_REQUEST_MAGIC` (proto.md "Request message").
    case badRequestMagic(UInt32)
    /// A reply did not start with a simple or structured reply magic.
    case badReplyMagic(UInt32)
    /// An option reply did not start with the option reply magic.
    case badOptionReplyMagic(UInt64)
    /// The server greeting did not start with `NBDMAGIC` then `IHAVEOPT`.
    case badGreeting(initPassword: UInt64, optionMagic: UInt64)
    /// A structured reply chunk's length is inconsistent with its type
    /// (proto.md "Structured reply types").
    case malformedReplyChunk(NBDReplyType, length: UInt32)
    /// A reply's payload is longer than the decoder accepts.
    case replyTooLarge(UInt32)
}
