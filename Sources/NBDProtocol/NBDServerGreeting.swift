import NIOCore

/// The first message of the newstyle handshake, sent by the server.
///
/// proto.md, "Handshake" → "Newstyle negotiation":
///
///     S: 64 bits, 0x4e42444d41474943 (ASCII 'NBDMAGIC')
///     S: 64 bits, 0x49484156454F5054 (ASCII 'IHAVEOPT')
///     S: 16 bits, handshake flags
public struct NBDServerGreeting: Hashable, Sendable {
    /// The size of the encoded greeting in bytes.
    public static let size = 18

    public var flags: NBDHandshakeFlags

    public init(flags: NBDHandshakeFlags) {
        self.flags = flags
    }
}

extension ByteBuffer {
    /// Writes the 18-byte server greeting.
    @discardableResult
    public mutating func writeNBDServerGreeting(_ greeting: NBDServerGreeting) -> Int {
        self.writeMultipleIntegers(NBDMagic.initPassword, NBDMagic.option, greeting.flags.rawValue)
    }

    /// Client side: reads the server greeting, or returns `nil` without consuming
    /// anything if fewer than 18 bytes are readable.
    public mutating func readNBDServerGreeting() throws(NBDProtocolError) -> NBDServerGreeting? {
        guard
            let (password, option, flags) = self.getMultipleIntegers(
                at: self.readerIndex, as: (UInt64, UInt64, UInt16).self)
        else { return nil }
        guard password == NBDMagic.initPassword, option == NBDMagic.option else {
            throw .badGreeting(initPassword: password, optionMagic: option)
        }
        self.moveReaderIndex(forwardBy: NBDServerGreeting.size)
        return NBDServerGreeting(flags: NBDHandshakeFlags(rawValue: flags))
    }
}
