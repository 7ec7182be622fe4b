/// A transmission-phase message from the server: a simple reply or one
/// structured reply chunk.
///
/// proto.md, "Transmission": "There are three message types in the
/// transmission phase: the request, the simple reply, and the structured
/// reply chunk."
public enum NBDReply: Hashable, Sendable {
    case simple(NBDSimpleReply)
    case structured(NBDStructuredReplyChunk)

    /// The cookie of the request this message answers.
    public var cookie: UInt64 {
        switch self {
        case .simple(let reply): reply.cookie
        case .structured(let chunk): chunk.cookie
        }
    }
}
