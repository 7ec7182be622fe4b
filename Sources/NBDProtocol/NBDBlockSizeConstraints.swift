/// The size constraints of an export: minimum block size, preferred block
/// size and maximum payload size.
///
/// proto.md, "Size constraints" and `NBD_INFO_BLOCK_SIZE`. The validating
/// initializer enforces the spec's rules for advertised values:
/// - minimum: a power of 2, at most 2^16;
/// - preferred: a power of 2, at least max(minimum, 512);
/// - maximum: at least the preferred size (need not be a power of 2).
public struct NBDBlockSizeConstraints: Hashable, Sendable {
    /// Why a set of constraints cannot be advertised.
    public enum ValidationError: Error, Hashable, Sendable {
        case invalidMinimum(UInt32)
        case invalidPreferred(UInt32)
        case invalidMaximum(UInt32)
    }

    /// The spec's defaults: minimum 1, preferred 4096, maximum payload 2^25.
    public static let `default` = NBDBlockSizeConstraints(
        unchecked: 1, preferred: 4096, maximum: UInt32(NBDLimits.defaultMaximumPayload))

    public let minimum: UInt32
    public let preferred: UInt32
    public let maximum: UInt32

    public init(minimum: UInt32, preferred: UInt32, maximum: UInt32) throws(ValidationError) {
        guard minimum.nonzeroBitCount == 1, minimum <= 1 << 16 else { throw .invalidMinimum(minimum) }
        guard preferred.nonzeroBitCount == 1, preferred >= max(minimum, 512) else {
            throw .invalidPreferred(preferred)
        }
        guard maximum >= preferred else { throw .invalidMaximum(maximum) }
        self.init(unchecked: minimum, preferred: preferred, maximum: maximum)
    }

    init(unchecked minimum: UInt32, preferred: UInt32, maximum: UInt32) {
        self.minimum = minimum
        self.preferred = preferred
        self.maximum = maximum
    }
}
