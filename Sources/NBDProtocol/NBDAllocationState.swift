/// The status flags of a block status descriptor in the `base:allocation`
/// metadata context.
///
/// proto.md, "Metadata querying" → "`base:allocation` metadata context".
public struct NBDAllocationState: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Bit 0, `NBD_STATE_HOLE`: the extent is not allocated.
    public static let hole = NBDAllocationState(rawValue: 1 << 0)
    /// Bit 1, `NBD_STATE_ZERO`: the extent reads as zeroes.
    public static let zero = NBDAllocationState(rawValue: 1 << 1)

    /// The name of the context, `base:allocation`.
    public static let contextName = "base:allocation"
}
