/// One extent of an `NBD_REPLY_TYPE_BLOCK_STATUS` chunk.
///
/// proto.md, "Structured reply types" → `NBD_REPLY_TYPE_BLOCK_STATUS`:
/// 32 bits length of the extent (unsigned, MUST be nonzero), 32 bits status flags
/// (for `base:allocation`, see ``NBDAllocationState``).
public struct NBDBlockStatusDescriptor: Hashable, Sendable {
    /// The size of one encoded descriptor in bytes.
    public static let size = 8

    public var length: UInt32
    public var flags: UInt32

    public init(length: UInt32, flags: UInt32) {
        self.length = length
        self.flags = flags
    }

    /// A descriptor in the `base:allocation` context.
    public init(length: UInt32, state: NBDAllocationState) {
        self.init(length: length, flags: state.rawValue)
    }
}
