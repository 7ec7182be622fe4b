/// The I/O Command Set Independent Identify Namespace data structure, CNS 08h
/// (NVMe Base Specification 2.0, §5.17.2.9, Figure 280; NSFEAT bit 4 Rotational
/// Media from NVMe 2.1). Linux reads it for `QUEUE_FLAG_ROT` (`NVME_NS_ROTATIONAL`).
public struct IdentifyNamespaceIndependent: Hashable, Sendable {
    public static let size = 4096

    /// NSFEAT bit 4: the namespace is stored on rotational media.
    public var rotationalMedia = false
    /// NSATTR bit 0: write protected.
    public var isWriteProtected = false
    /// NSTAT bit 0: namespace ready.
    public var isReady = true

    public init() {}

    public func encode() -> [UInt8] {
        var b = [UInt8](repeating: 0, count: Self.size)
        b[0] = rotationalMedia ? 1 << 4 : 0
        b[8] = isWriteProtected ? 1 : 0
        b[14] = isReady ? 1 : 0
        return b
    }

    public init(decoding b: [UInt8]) {
        precondition(b.count >= 15)
        rotationalMedia = b[0] & (1 << 4) != 0
        isWriteProtected = b[8] & 1 != 0
        isReady = b[14] & 1 != 0
    }
}
