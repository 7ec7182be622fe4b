import NIOCore

/// An option sent by the client during option haggling (client side encoder).
///
/// proto.md, "Newstyle negotiation":
///
///     C: 64 bits, 0x49484156454F5054 (ASCII 'IHAVEOPT')
///     C: 32 bits, option
///     C: 32 bits, length of option data (unsigned)
///     C: any data needed for the chosen option, of length as specified above.
///
/// The factories build the data layouts of "Option types". They do not
/// validate: tests use them to build malformed input too.
public struct NBDOptionRequest: Hashable, Sendable {
    /// The size of the option header in bytes.
    public static let headerSize = 16

    public var option: NBDOption
    public var data: ByteBuffer

    public init(option: NBDOption, data: ByteBuffer = ByteBuffer()) {
        self.option = option
        self.data = data
    }

    /// `NBD_OPT_EXPORT_NAME`: the name as the whole data.
    public static func exportName(_ name: String) -> NBDOptionRequest {
        NBDOptionRequest(option: .exportName, data: ByteBuffer(string: name))
    }

    /// `NBD_OPT_ABORT`, no data.
    public static let abort = NBDOptionRequest(option: .abort)
    /// `NBD_OPT_LIST`, no data.
    public static let list = NBDOptionRequest(option: .list)
    /// `NBD_OPT_STARTTLS`, no data.
    public static let startTLS = NBDOptionRequest(option: .startTLS)
    /// `NBD_OPT_STRUCTURED_REPLY`, no data.
    public static let structuredReply = NBDOptionRequest(option: .structuredReply)
    /// `NBD_OPT_EXTENDED_HEADERS`, no data.
    public static let extendedHeaders = NBDOptionRequest(option: .extendedHeaders)

    /// `NBD_OPT_INFO`: 32 bits name length, name, 16 bits count, 16 bits × count requests.
    public static func info(exportName: String, requests: [NBDInfoType] = []) -> NBDOptionRequest {
        NBDOptionRequest(option: .info, data: Self.infoData(exportName: exportName, requests: requests))
    }

    /// `NBD_OPT_GO`: same data as `NBD_OPT_INFO`.
    public static func go(exportName: String, requests: [NBDInfoType] = []) -> NBDOptionRequest {
        NBDOptionRequest(option: .go, data: Self.infoData(exportName: exportName, requests: requests))
    }

    /// `NBD_OPT_LIST_META_CONTEXT`: 32 bits name length, name, 32 bits count, (32 bits length, query) × count.
    public static func listMetaContext(exportName: String, queries: [String]) -> NBDOptionRequest {
        NBDOptionRequest(option: .listMetaContext, data: Self.metaContextData(exportName: exportName, queries: queries))
    }

    /// `NBD_OPT_SET_META_CONTEXT`: same data as `NBD_OPT_LIST_META_CONTEXT`.
    public static func setMetaContext(exportName: String, queries: [String]) -> NBDOptionRequest {
        NBDOptionRequest(option: .setMetaContext, data: Self.metaContextData(exportName: exportName, queries: queries))
    }

    private static func infoData(exportName: String, requests: [NBDInfoType]) -> ByteBuffer {
        var data = ByteBuffer()
        data.writeInteger(UInt32(exportName.utf8.count))
        data.writeString(exportName)
        data.writeInteger(UInt16(requests.count))
        for request in requests { data.writeInteger(request.rawValue) }
        return data
    }

    private static func metaContextData(exportName: String, queries: [String]) -> ByteBuffer {
        var data = ByteBuffer()
        data.writeInteger(UInt32(exportName.utf8.count))
        data.writeString(exportName)
        data.writeInteger(UInt32(queries.count))
        for query in queries {
            data.writeInteger(UInt32(query.utf8.count))
            data.writeString(query)
        }
        return data
    }
}

extension ByteBuffer {
    /// Client side: writes the 32-bit client flags.
    @discardableResult
    public mutating func writeNBDClientFlags(_ flags: NBDClientFlags) -> Int {
        self.writeInteger(flags.rawValue)
    }

    /// Writes only an option header announcing `length` bytes of data
    /// (the data, if any, is written separately).
    @discardableResult
    public mutating func writeNBDOptionHeader(option: NBDOption, length: UInt32) -> Int {
        self.writeMultipleIntegers(NBDMagic.option, option.rawValue, length)
    }

    /// Writes an option header and its data.
    @discardableResult
    public mutating func writeNBDOption(_ request: NBDOptionRequest) -> Int {
        self.writeNBDOptionHeader(option: request.option, length: UInt32(request.data.readableBytes))
            + self.writeImmutableBuffer(request.data)
    }
}
