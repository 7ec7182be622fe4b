import NIOCore

/// Decodes the client's byte stream during the transmission phase into
/// requests, assembling the payload of `NBD_CMD_WRITE`.
///
/// proto.md, "Transmission" → "Request message" and "Size constraints".
/// Only compact headers are understood (`NBD_OPT_EXTENDED_HEADERS` is never
/// negotiated), so only `NBD_CMD_WRITE` is followed by a payload of *length*
/// bytes.
///
/// Outputs (see ``Message``):
/// - ``Message/request(_:payload:)``: a well-formed request; `payload` holds
///   exactly `length` bytes for `NBD_CMD_WRITE` and is `nil` otherwise.
/// - ``Message/oversizedPayload(_:)``: an `NBD_CMD_WRITE` whose length exceeds
///   ``maximumPayload``. It is emitted as soon as the header is read; the
///   decoder then discards the `length` payload bytes as they arrive, without
///   buffering them (any length up to 4 GiB − 1), so the connection survives
///   and the server can answer `NBD_EINVAL`/`NBD_EOVERFLOW`.
/// - ``Message/unexpectedPayloadLengthFlag(_:)``: a request carrying
///   `NBD_CMD_FLAG_PAYLOAD_LEN`. That flag is only valid with extended headers;
///   in compact mode "the client MUST NOT use" it (ext-header proto.md, "Request
///   message"). The framing is still unambiguous under the compact rules (the
///   type decides whether a payload follows), so this is an *output*, not a
///   thrown error: the decoder discards a `NBD_CMD_WRITE` payload without
///   buffering it and the server answers `NBD_EINVAL`, as the spec asks a server
///   to "gracefully consume *length* bytes of payload … and proceed with the
///   next client command". Errors are reserved for lost framing.
///
/// Throws ``NBDProtocolError/badRequestMagic(_:)`` when a header does not start
/// with `NBD_REQUEST_MAGIC`: the stream can no longer be framed and the server
/// closes the connection.
///
/// The decoder works with any chunking of the input (byte by byte, arbitrary
/// chunks, or everything at once).
public struct NBDRequestDecoder: NIOSingleStepByteToMessageDecoder, Sendable {
    /// One decoded unit of the transmission stream.
    public enum Message: Hashable, Sendable {
        /// A well-formed request with its payload (`NBD_CMD_WRITE` only).
        case request(NBDRequest, payload: ByteBuffer?)
        /// An `NBD_CMD_WRITE` longer than ``NBDRequestDecoder/maximumPayload``; its payload is being discarded.
        case oversizedPayload(NBDRequest)
        /// A request with `NBD_CMD_FLAG_PAYLOAD_LEN` set although extended headers are not in use.
        case unexpectedPayloadLengthFlag(NBDRequest)
    }

    public typealias InboundOut = Message

    /// The default limit on a write payload: 2^25 bytes (32 MiB), the size the
    /// spec says SHOULD NOT be considered a denial of service.
    public static let defaultMaximumPayload = NBDLimits.defaultMaximumPayload

    private enum State: Hashable, Sendable {
        case header
        case payload(NBDRequest)
        case discarding(remaining: Int)
    }

    /// The largest `NBD_CMD_WRITE` payload that is assembled and delivered.
    public let maximumPayload: Int
    private var state: State = .header

    /// - Parameter maximumPayload: the largest write payload to buffer, in bytes (at most 2^32 − 1 matters).
    public init(maximumPayload: Int = NBDRequestDecoder.defaultMaximumPayload) {
        precondition(maximumPayload >= 0, "maximumPayload must not be negative")
        self.maximumPayload = maximumPayload
    }

    /// The number of payload bytes still to be discarded, 0 when not discarding.
    public var bytesToDiscard: Int {
        if case .discarding(let remaining) = self.state { return remaining }
        return 0
    }

    public mutating func decode(buffer: inout ByteBuffer) throws(NBDProtocolError) -> Message? {
        while true {
            switch self.state {
            case .discarding(let remaining):
                let skipped = min(remaining, buffer.readableBytes)
                buffer.moveReaderIndex(forwardBy: skipped)
                guard skipped == remaining else {
                    self.state = .discarding(remaining: remaining - skipped)
                    return nil
                }
                self.state = .header

            case .header:
                guard let request = try buffer.readNBDRequest() else { return nil }
                let length = Int(request.length)
                if request.flags.contains(.payloadLength) {
                    self.state = request.hasPayload && length > 0 ? .discarding(remaining: length) : .header
                    return .unexpectedPayloadLengthFlag(request)
                }
                guard request.hasPayload else { return .request(request, payload: nil) }
                guard length <= self.maximumPayload else {
                    self.state = length > 0 ? .discarding(remaining: length) : .header
                    return .oversizedPayload(request)
                }
                self.state = .payload(request)

            case .payload(let request):
                guard let payload = buffer.readSlice(length: Int(request.length)) else { return nil }
                self.state = .header
                return .request(request, payload: payload)
            }
        }
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws(NBDProtocolError) -> Message? {
        try self.decode(buffer: &buffer)
    }
}
