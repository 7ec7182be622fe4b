/// Numeric limits from the NBD specification.
///
/// proto.md, "Conventions" (strings) and "Size constraints".
public enum NBDLimits {
    /// A string (export name, error message, …) MUST be no longer than 4096 bytes.
    public static let maximumStringLength = 4096
    /// The payload size below which a request SHOULD NOT be considered a
    /// denial of service: 2^25 bytes (32 MiB).
    public static let defaultMaximumPayload = 1 << 25
    /// The size of the zero padding after an `NBD_OPT_EXPORT_NAME` reply
    /// unless `NBD_FLAG_C_NO_ZEROES` was negotiated.
    public static let exportNamePaddingSize = 124
}
