/// The values of proto.md's "Values" section, one place, in its order (as nbd's
/// own `nbd-protocol.h` keeps them): handshake, client and transmission flags,
/// option and option reply types, information types, command flags, structured
/// reply flags and types, request types and error values.
///
/// Flag sets are `OptionSet`s; the enumerated types are structs over their raw
/// value (``NBDNamedValue``) so that a value this implementation does not know
/// stays representable. Each of those spells proto.md's name of a value once, in
/// its `names` table, which ``NBDNamedValue/description`` prints.

// MARK: - Handshake flags

/// The 16-bit handshake flags the server sends in its greeting.
///
/// proto.md, "Values" → "Handshake flags".
public struct NBDHandshakeFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Bit 0, `NBD_FLAG_FIXED_NEWSTYLE`: the server speaks fixed newstyle.
    public static let fixedNewstyle = NBDHandshakeFlags(rawValue: 1 << 0)
    /// Bit 1, `NBD_FLAG_NO_ZEROES`: the server may omit the 124 zero bytes after `NBD_OPT_EXPORT_NAME`.
    public static let noZeroes = NBDHandshakeFlags(rawValue: 1 << 1)
}

// MARK: - Client flags

/// The 32-bit client flags a client sends after the server greeting.
///
/// proto.md, "Values" → "Client flags". A server MUST drop the connection on
/// an unknown flag or on a flag it did not advertise.
public struct NBDClientFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Bit 0, `NBD_FLAG_C_FIXED_NEWSTYLE`.
    public static let fixedNewstyle = NBDClientFlags(rawValue: 1 << 0)
    /// Bit 1, `NBD_FLAG_C_NO_ZEROES`: the server MUST NOT send the 124 zero bytes after `NBD_OPT_EXPORT_NAME`.
    public static let noZeroes = NBDClientFlags(rawValue: 1 << 1)

    /// Every flag this implementation knows.
    public static let known: NBDClientFlags = [.fixedNewstyle, .noZeroes]
}

// MARK: - Transmission flags

/// The 16-bit transmission flags describing an export.
///
/// proto.md, "Values" → "Transmission flags". `NBD_FLAG_HAS_FLAGS` MUST always
/// be set; `NBD_FLAG_SEND_DF` MUST be clear unless structured replies were
/// negotiated; `NBD_FLAG_SEND_FAST_ZERO` MUST be clear without
/// `NBD_FLAG_SEND_WRITE_ZEROES`. ``NBDServerHandshake`` enforces these rules
/// on what it advertises.
public struct NBDTransmissionFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Bit 0, `NBD_FLAG_HAS_FLAGS`: always 1.
    public static let hasFlags = NBDTransmissionFlags(rawValue: 1 << 0)
    /// Bit 1, `NBD_FLAG_READ_ONLY`.
    public static let readOnly = NBDTransmissionFlags(rawValue: 1 << 1)
    /// Bit 2, `NBD_FLAG_SEND_FLUSH`: exposes `NBD_CMD_FLUSH`.
    public static let sendFlush = NBDTransmissionFlags(rawValue: 1 << 2)
    /// Bit 3, `NBD_FLAG_SEND_FUA`: exposes `NBD_CMD_FLAG_FUA`.
    public static let sendFUA = NBDTransmissionFlags(rawValue: 1 << 3)
    /// Bit 4, `NBD_FLAG_ROTATIONAL`.
    public static let rotational = NBDTransmissionFlags(rawValue: 1 << 4)
    /// Bit 5, `NBD_FLAG_SEND_TRIM`: exposes `NBD_CMD_TRIM`.
    public static let sendTrim = NBDTransmissionFlags(rawValue: 1 << 5)
    /// Bit 6, `NBD_FLAG_SEND_WRITE_ZEROES`: exposes `NBD_CMD_WRITE_ZEROES` and `NBD_CMD_FLAG_NO_HOLE`.
    public static let sendWriteZeroes = NBDTransmissionFlags(rawValue: 1 << 6)
    /// Bit 7, `NBD_FLAG_SEND_DF`: `NBD_CMD_READ` supports `NBD_CMD_FLAG_DF`.
    public static let sendDF = NBDTransmissionFlags(rawValue: 1 << 7)
    /// Bit 8, `NBD_FLAG_CAN_MULTI_CONN`: flush and FUA are visible across connections.
    public static let canMultiConn = NBDTransmissionFlags(rawValue: 1 << 8)
    /// Bit 9, `NBD_FLAG_SEND_RESIZE` (experimental `RESIZE` extension).
    public static let sendResize = NBDTransmissionFlags(rawValue: 1 << 9)
    /// Bit 10, `NBD_FLAG_SEND_CACHE`: exposes `NBD_CMD_CACHE`.
    public static let sendCache = NBDTransmissionFlags(rawValue: 1 << 10)
    /// Bit 11, `NBD_FLAG_SEND_FAST_ZERO`: exposes `NBD_CMD_FLAG_FAST_ZERO`.
    public static let sendFastZero = NBDTransmissionFlags(rawValue: 1 << 11)
    /// Bit 12, `NBD_FLAG_BLOCK_STATUS_PAYLOAD` (experimental `EXTENDED_HEADERS` extension).
    public static let blockStatusPayload = NBDTransmissionFlags(rawValue: 1 << 12)
}

// MARK: - Option types

/// An option code sent by the client during option haggling.
///
/// proto.md, "Values" → "Option types". Options this implementation does not
/// know stay representable (the server answers them with `NBD_REP_ERR_UNSUP`).
public struct NBDOption: NBDNamedValue, Hashable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let exportName = NBDOption(rawValue: 1)
    public static let abort = NBDOption(rawValue: 2)
    public static let list = NBDOption(rawValue: 3)
    /// Withdrawn.
    public static let peekExport = NBDOption(rawValue: 4)
    public static let startTLS = NBDOption(rawValue: 5)
    public static let info = NBDOption(rawValue: 6)
    public static let go = NBDOption(rawValue: 7)
    public static let structuredReply = NBDOption(rawValue: 8)
    public static let listMetaContext = NBDOption(rawValue: 9)
    public static let setMetaContext = NBDOption(rawValue: 10)
    /// Experimental `EXTENDED_HEADERS` extension.
    public static let extendedHeaders = NBDOption(rawValue: 11)

    public static let names: [NBDOption: String] = [
        .exportName: "NBD_OPT_EXPORT_NAME",
        .abort: "NBD_OPT_ABORT",
        .list: "NBD_OPT_LIST",
        .peekExport: "NBD_OPT_PEEK_EXPORT",
        .startTLS: "NBD_OPT_STARTTLS",
        .info: "NBD_OPT_INFO",
        .go: "NBD_OPT_GO",
        .structuredReply: "NBD_OPT_STRUCTURED_REPLY",
        .listMetaContext: "NBD_OPT_LIST_META_CONTEXT",
        .setMetaContext: "NBD_OPT_SET_META_CONTEXT",
        .extendedHeaders: "NBD_OPT_EXTENDED_HEADERS",
    ]
    public static let unknownPrefix = "NBD_OPT"
}

// MARK: - Option reply types

/// The reply type of a fixed-newstyle option reply.
///
/// proto.md, "Values" → "Option reply types". Error replies have bit 31 set
/// (2^31 + n) and MAY carry a human-readable message as their data.
public struct NBDOptionReplyType: NBDNamedValue, Hashable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    private static let errorBit: UInt32 = 1 << 31

    public static let ack = NBDOptionReplyType(rawValue: 1)
    /// One export, in reply to `NBD_OPT_LIST`.
    public static let server = NBDOptionReplyType(rawValue: 2)
    /// One ``NBDInfo`` item, in reply to `NBD_OPT_INFO`/`NBD_OPT_GO`.
    public static let info = NBDOptionReplyType(rawValue: 3)
    /// One metadata context.
    public static let metaContext = NBDOptionReplyType(rawValue: 4)

    public static let errorUnsupported = NBDOptionReplyType(rawValue: errorBit | 1)
    public static let errorPolicy = NBDOptionReplyType(rawValue: errorBit | 2)
    public static let errorInvalid = NBDOptionReplyType(rawValue: errorBit | 3)
    public static let errorPlatform = NBDOptionReplyType(rawValue: errorBit | 4)
    public static let errorTLSRequired = NBDOptionReplyType(rawValue: errorBit | 5)
    public static let errorUnknown = NBDOptionReplyType(rawValue: errorBit | 6)
    public static let errorShutdown = NBDOptionReplyType(rawValue: errorBit | 7)
    public static let errorBlockSizeRequired = NBDOptionReplyType(rawValue: errorBit | 8)
    public static let errorTooBig = NBDOptionReplyType(rawValue: errorBit | 9)
    /// Experimental `EXTENDED_HEADERS` extension.
    public static let errorExtendedHeaderRequired = NBDOptionReplyType(rawValue: errorBit | 10)

    /// Whether this is an error reply (bit 31 set).
    public var isError: Bool { self.rawValue & Self.errorBit != 0 }

    public static let names: [NBDOptionReplyType: String] = [
        .ack: "NBD_REP_ACK",
        .server: "NBD_REP_SERVER",
        .info: "NBD_REP_INFO",
        .metaContext: "NBD_REP_META_CONTEXT",
        .errorUnsupported: "NBD_REP_ERR_UNSUP",
        .errorPolicy: "NBD_REP_ERR_POLICY",
        .errorInvalid: "NBD_REP_ERR_INVALID",
        .errorPlatform: "NBD_REP_ERR_PLATFORM",
        .errorTLSRequired: "NBD_REP_ERR_TLS_REQD",
        .errorUnknown: "NBD_REP_ERR_UNKNOWN",
        .errorShutdown: "NBD_REP_ERR_SHUTDOWN",
        .errorBlockSizeRequired: "NBD_REP_ERR_BLOCK_SIZE_REQD",
        .errorTooBig: "NBD_REP_ERR_TOO_BIG",
        .errorExtendedHeaderRequired: "NBD_REP_ERR_EXT_HEADER_REQD",
    ]
    public static let unknownPrefix = "NBD_REP"
}

// MARK: - Information types

/// The information type of an `NBD_REP_INFO` reply or an information request
/// in `NBD_OPT_INFO`/`NBD_OPT_GO`.
///
/// proto.md, "Values" → "Option reply types" → `NBD_REP_INFO`. Unknown
/// requests MUST be ignored, not rejected.
public struct NBDInfoType: NBDNamedValue, Hashable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Size and transmission flags; mandatory before a successful ACK.
    public static let export = NBDInfoType(rawValue: 0)
    /// The canonical export name.
    public static let name = NBDInfoType(rawValue: 1)
    /// A human-readable description.
    public static let description = NBDInfoType(rawValue: 2)
    /// Minimum, preferred and maximum block/payload sizes.
    public static let blockSize = NBDInfoType(rawValue: 3)

    public static let names: [NBDInfoType: String] = [
        .export: "NBD_INFO_EXPORT",
        .name: "NBD_INFO_NAME",
        .description: "NBD_INFO_DESCRIPTION",
        .blockSize: "NBD_INFO_BLOCK_SIZE",
    ]
    public static let unknownPrefix = "NBD_INFO"
}

// MARK: - Command flags

/// The 16-bit command flags of a transmission-phase request.
///
/// proto.md, "Values" → "Transmission phase" → "Command flags". Which flags are
/// valid depends on the command and on negotiation; the server SHOULD answer
/// an unknown or inapplicable flag with `NBD_EINVAL`.
public struct NBDCommandFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Bit 0, `NBD_CMD_FLAG_FUA`.
    public static let fua = NBDCommandFlags(rawValue: 1 << 0)
    /// Bit 1, `NBD_CMD_FLAG_NO_HOLE` (`NBD_CMD_WRITE_ZEROES`).
    public static let noHole = NBDCommandFlags(rawValue: 1 << 1)
    /// Bit 2, `NBD_CMD_FLAG_DF` (`NBD_CMD_READ` with structured replies).
    public static let dontFragment = NBDCommandFlags(rawValue: 1 << 2)
    /// Bit 3, `NBD_CMD_FLAG_REQ_ONE` (`NBD_CMD_BLOCK_STATUS`).
    public static let requestOne = NBDCommandFlags(rawValue: 1 << 3)
    /// Bit 4, `NBD_CMD_FLAG_FAST_ZERO` (`NBD_CMD_WRITE_ZEROES`).
    public static let fastZero = NBDCommandFlags(rawValue: 1 << 4)
    /// Bit 5, `NBD_CMD_FLAG_PAYLOAD_LEN`: only valid with extended headers,
    /// which this implementation does not negotiate (see ``NBDRequestDecoder``).
    public static let payloadLength = NBDCommandFlags(rawValue: 1 << 5)
}

// MARK: - Structured reply flags

/// The 16-bit flags of a structured reply chunk.
///
/// proto.md, "Values" → "Structured reply flags".
public struct NBDReplyFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Bit 0, `NBD_REPLY_FLAG_DONE`: this is the final chunk of the reply.
    public static let done = NBDReplyFlags(rawValue: 1 << 0)
}

// MARK: - Structured reply types

/// The type of a structured reply chunk.
///
/// proto.md, "Values" → "Structured reply types". Error chunk types have bit 15
/// set (2^15 + n) and begin with an error value and a message.
public struct NBDReplyType: NBDNamedValue, Hashable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// No payload; only with `NBD_REPLY_FLAG_DONE`.
    public static let none = NBDReplyType(rawValue: 0)
    /// Offset then data.
    public static let offsetData = NBDReplyType(rawValue: 1)
    /// Offset then hole size.
    public static let offsetHole = NBDReplyType(rawValue: 2)
    /// Context id then (length, flags) descriptors.
    public static let blockStatus = NBDReplyType(rawValue: 5)
    public static let error = NBDReplyType(rawValue: 0x8001)
    public static let errorOffset = NBDReplyType(rawValue: 0x8002)

    /// Whether this is an error chunk type (bit 15 set).
    public var isError: Bool { self.rawValue & 0x8000 != 0 }

    public static let names: [NBDReplyType: String] = [
        .none: "NBD_REPLY_TYPE_NONE",
        .offsetData: "NBD_REPLY_TYPE_OFFSET_DATA",
        .offsetHole: "NBD_REPLY_TYPE_OFFSET_HOLE",
        .blockStatus: "NBD_REPLY_TYPE_BLOCK_STATUS",
        .error: "NBD_REPLY_TYPE_ERROR",
        .errorOffset: "NBD_REPLY_TYPE_ERROR_OFFSET",
    ]
    public static let unknownPrefix = "NBD_REPLY_TYPE"
}

// MARK: - Request types

/// The type of a transmission-phase request.
///
/// proto.md, "Values" → "Request types". Unknown commands stay representable
/// (the server SHOULD answer them with `NBD_EINVAL`).
public struct NBDCommandType: NBDNamedValue, Hashable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let read = NBDCommandType(rawValue: 0)
    /// The only request followed by a payload (compact headers).
    public static let write = NBDCommandType(rawValue: 1)
    /// Soft disconnect; no reply.
    public static let disconnect = NBDCommandType(rawValue: 2)
    public static let flush = NBDCommandType(rawValue: 3)
    public static let trim = NBDCommandType(rawValue: 4)
    public static let cache = NBDCommandType(rawValue: 5)
    public static let writeZeroes = NBDCommandType(rawValue: 6)
    public static let blockStatus = NBDCommandType(rawValue: 7)
    /// Experimental `RESIZE` extension.
    public static let resize = NBDCommandType(rawValue: 8)

    public static let names: [NBDCommandType: String] = [
        .read: "NBD_CMD_READ",
        .write: "NBD_CMD_WRITE",
        .disconnect: "NBD_CMD_DISC",
        .flush: "NBD_CMD_FLUSH",
        .trim: "NBD_CMD_TRIM",
        .cache: "NBD_CMD_CACHE",
        .writeZeroes: "NBD_CMD_WRITE_ZEROES",
        .blockStatus: "NBD_CMD_BLOCK_STATUS",
        .resize: "NBD_CMD_RESIZE",
    ]
    public static let unknownPrefix = "NBD_CMD"
}

// MARK: - Error values

/// An error value in a simple reply or an error chunk.
///
/// proto.md, "Values" → "Error values". A client SHOULD treat an unexpected
/// value as `NBD_EINVAL`. Zero means success in a simple reply and is spelled
/// ``success``.
public struct NBDErrno: NBDNamedValue, Hashable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// No error (simple replies only; error chunks MUST carry a nonzero value).
    public static let success = NBDErrno(rawValue: 0)
    /// Operation not permitted.
    public static let eperm = NBDErrno(rawValue: 1)
    /// Input/output error.
    public static let eio = NBDErrno(rawValue: 5)
    /// Cannot allocate memory.
    public static let enomem = NBDErrno(rawValue: 12)
    /// Invalid argument.
    public static let einval = NBDErrno(rawValue: 22)
    /// No space left on device.
    public static let enospc = NBDErrno(rawValue: 28)
    /// Value too large.
    public static let eoverflow = NBDErrno(rawValue: 75)
    /// Operation not supported.
    public static let enotsup = NBDErrno(rawValue: 95)
    /// Server is shutting down.
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
