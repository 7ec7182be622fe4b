import NIOCore

/// The header of a transmission-phase request (compact form, 28 bytes).
///
/// proto.md, "Transmission" → "Request message":
///
///     C: 32 bits, 0x25609513, magic (NBD_REQUEST_MAGIC)
///     C: 16 bits, command flags
///     C: 16 bits, type
///     C: 64 bits, cookie
///     C: 64 bits, offset (unsigned)
///     C: 32 bits, length (unsigned)
///     C: (length bytes of data if the request is of type NBD_CMD_WRITE)
///
/// The magic is not stored: it is written by `ByteBuffer.writeNBDRequest(_:)` and
/// checked by `ByteBuffer.readNBDRequest()`.
public struct NBDRequest: Hashable, Sendable {
    /// The size of the encoded header in bytes.
    public static let headerSize = 28
    /// The magic that starts every request, `NBD_REQUEST_MAGIC`.
    public static let magic = NBDMagic.request

    public var flags: NBDCommandFlags
    public var type: NBDCommandType
    /// Opaque value echoed by the server in every reply to this request.
    public var cookie: UInt64
    public var offset: UInt64
    /// For `NBD_CMD_WRITE` the payload length, otherwise the effect length.
    public var length: UInt32

    public init(flags: NBDCommandFlags = [], type: NBDCommandType, cookie: UInt64, offset: UInt64, length: UInt32) {
        self.flags = flags
        self.type = type
        self.cookie = cookie
        self.offset = offset
        self.length = length
    }

    /// Whether `length` bytes of payload follow the header on the wire
    /// (compact headers: exactly for `NBD_CMD_WRITE`).
    public var hasPayload: Bool { self.type == .write }
}

extension ByteBuffer {
    /// Writes the 28-byte header of `request`; returns the number of bytes written.
    @discardableResult
    public mutating func writeNBDRequest(_ request: NBDRequest) -> Int {
        self.reserveCapacity(minimumWritableBytes: NBDRequest.headerSize)
        var written = self.writeInteger(NBDRequest.magic)
        written += self.writeInteger(request.flags.rawValue)
        written += self.writeInteger(request.type.rawValue)
        written += self.writeInteger(request.cookie)
        written += self.writeInteger(request.offset)
        written += self.writeInteger(request.length)
        return written
    }

    /// Reads a 28-byte request header.
    ///
    /// - Returns: `nil` without consuming anything if fewer than 28 bytes are readable.
    /// - Throws: ``NBDProtocolError/badRequestMagic(_:)`` without consuming anything.
    public mutating func readNBDRequest() throws(NBDProtocolError) -> NBDRequest? {
        guard self.readableBytes >= NBDRequest.headerSize else { return nil }
        let magic = self.getInteger(at: self.readerIndex, as: UInt32.self)!
        guard magic == NBDRequest.magic else { throw .badRequestMagic(magic) }
        self.moveReaderIndex(forwardBy: 4)
        let flags = self.readInteger(as: UInt16.self)!
        let type = self.readInteger(as: UInt16.self)!
        let cookie = self.readInteger(as: UInt64.self)!
        let offset = self.readInteger(as: UInt64.self)!
        let length = self.readInteger(as: UInt32.self)!
        return NBDRequest(
            flags: NBDCommandFlags(rawValue: flags), type: NBDCommandType(rawValue: type),
            cookie: cookie, offset: offset, length: length)
    }
}
