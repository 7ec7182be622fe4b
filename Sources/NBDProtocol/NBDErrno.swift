/// An error value in a simple reply or an error chunk.
///
/// proto.md, "Values" → "Error values". A struct over the raw 32-bit value:
/// a client SHOULD treat an unexpected value as `NBD_EINVAL`. Zero means
/// success in a simple reply and is spelled ``success``.
public struct NBDErrno: NBDNamedValue, Hashable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// 0: no error (simple replies only; error chunks MUST carry a nonzero value).
    public static let success = NBDErrno(rawValue: 0)
    /// `NBD_EPERM` (1), operation not permitted.
    public static let eperm = NBDErrno(rawValue: 1)
    /// `NBD_EIO` (5), input/output error.
    public static let eio = NBDErrno(rawValue: 5)
    /// `NBD_ENOMEM` (12), cannot allocate memory.
    public static let enomem = NBDErrno(rawValue: 12)
    /// `NBD_EINVAL` (22), invalid argument.
    public static let einval = NBDErrno(rawValue: 22)
    /// `NBD_ENOSPC` (28), no space left on device.
    public static let enospc = NBDErrno(rawValue: 28)
    /// `NBD_EOVERFLOW` (75), value too large.
    public static let eoverflow = NBDErrno(rawValue: 75)
    /// `NBD_ENOTSUP` (95), operation not supported.
    public static let enotsup = NBDErrno(rawValue: 95)
    /// `NBD_ESHUTDOWN` (108), server is shutting down.
    public static let eshutdown = NBDErrno(rawValue: 108)

    public static let names: [NBDErrno: String] = [
        .success: "0",
        .eperm: "NBD_EPERM",
        .eio: "NBD_EIO",
        .enomem: "NBD_ENOMEM",
        .einval: "NBD_EINVAL",
        .enospc: "NBD_ENOSPC",
        .eoverflow: "NBD_EOVERFLOW",
        .enotsup: "NBD_ENOTSUP",
        .eshutdown: "NBD_ESHUTDOWN",
    ]
    public static let unknownPrefix = "NBD_E"
}
