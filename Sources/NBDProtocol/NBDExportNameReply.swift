import NIOCore

/// The server's answer to a successful `NBD_OPT_EXPORT_NAME`.
///
/// proto.md, "Handshake" → "Newstyle negotiation":
///
///     S: 64 bits, size of the export in bytes (unsigned)
///     S: 16 bits, transmission flags
///     S: 124 bytes, zeroes (reserved) (unless NBD_FLAG_C_NO_ZEROES was negotiated by the client)
public struct NBDExportNameReply: Hashable, Sendable {
    /// The size of the encoded reply without padding.
    public static let unpaddedSize = 10

    public var size: UInt64
    public var flags: NBDTransmissionFlags

    public init(size: UInt64, flags: NBDTransmissionFlags) {
        self.size = size
        self.flags = flags
    }
}

extension ByteBuffer {
    /// Writes an `NBD_OPT_EXPORT_NAME` reply, followed by 124 zero bytes unless `noZeroes`.
    @discardableResult
    public mutating func writeNBDExportNameReply(_ reply: NBDExportNameReply, noZeroes: Bool) -> Int {
        var written = self.writeMultipleIntegers(reply.size, reply.flags.rawValue)
        if !noZeroes {
            written += self.writeRepeatingByte(0, count: NBDLimits.exportNamePaddingSize)
        }
        return written
    }

    /// Client side: reads an `NBD_OPT_EXPORT_NAME` reply (and its padding unless
    /// `noZeroes`), or returns `nil` without consuming anything if incomplete.
    public mutating func readNBDExportNameReply(noZeroes: Bool) -> NBDExportNameReply? {
        let total = NBDExportNameReply.unpaddedSize + (noZeroes ? 0 : NBDLimits.exportNamePaddingSize)
        guard self.readableBytes >= total,
            let (size, flags) = self.readMultipleIntegers(as: (UInt64, UInt16).self)
        else { return nil }
        self.moveReaderIndex(forwardBy: total - NBDExportNameReply.unpaddedSize)
        return NBDExportNameReply(size: size, flags: NBDTransmissionFlags(rawValue: flags))
    }
}
