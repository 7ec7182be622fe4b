/// The 16-bit flags of a structured reply chunk.
///
/// proto.md, "Values" → "Structured reply flags".
public struct NBDReplyFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Bit 0, `NBD_REPLY_FLAG_DONE`: this is the final chunk of the reply.
    public static let done = NBDReplyFlags(rawValue: 1 << 0)
}
