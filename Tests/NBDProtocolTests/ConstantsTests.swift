import NBDProtocol
import Testing

/// Every constant against the value in proto.md ("Values" and the message sections).
@Suite("Constants match proto.md")
struct ConstantsTests {
    @Test func magics() {
        #expect(NBDMagic.initPassword == 0x4e42_444d_4147_4943)
        #expect(NBDMagic.option == 0x4948_4156_454F_5054)
        #expect(NBDMagic.optionReply == 0x3_e889_0455_65a9)
        #expect(NBDMagic.request == 0x2560_9513)
        #expect(NBDMagic.simpleReply == 0x6744_6698)
        #expect(NBDMagic.structuredReply == 0x668e_33ef)
        // ASCII spelling of the two handshake magics.
        #expect(Array("NBDMAGIC".utf8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) } == NBDMagic.initPassword)
        #expect(Array("IHAVEOPT".utf8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) } == NBDMagic.option)
    }

    @Test func handshakeAndClientFlags() {
        #expect(NBDHandshakeFlags.fixedNewstyle.rawValue == 1)
        #expect(NBDHandshakeFlags.noZeroes.rawValue == 2)
        #expect(NBDClientFlags.fixedNewstyle.rawValue == 1)
        #expect(NBDClientFlags.noZeroes.rawValue == 2)
    }

    @Test(arguments: [
        (NBDOption.exportName, UInt32(1)), (.abort, 2), (.list, 3), (.peekExport, 4), (.startTLS, 5), (.info, 6),
        (.go, 7), (.structuredReply, 8), (.listMetaContext, 9), (.setMetaContext, 10), (.extendedHeaders, 11),
    ])
    func optionCodes(option: NBDOption, value: UInt32) {
        #expect(option.rawValue == value)
    }

    @Test(arguments: [
        (NBDOptionReplyType.ack, UInt32(1), false), (.server, 2, false), (.info, 3, false), (.metaContext, 4, false),
        (.errorUnsupported, 0x8000_0001, true), (.errorPolicy, 0x8000_0002, true),
        (.errorInvalid, 0x8000_0003, true), (.errorPlatform, 0x8000_0004, true),
        (.errorTLSRequired, 0x8000_0005, true), (.errorUnknown, 0x8000_0006, true),
        (.errorShutdown, 0x8000_0007, true), (.errorBlockSizeRequired, 0x8000_0008, true),
        (.errorTooBig, 0x8000_0009, true), (.errorExtendedHeaderRequired, 0x8000_000a, true),
    ])
    func optionReplyTypes(type: NBDOptionReplyType, value: UInt32, isError: Bool) {
        #expect(type.rawValue == value)
        #expect(type.isError == isError)
    }

    @Test func infoTypes() {
        #expect(NBDInfoType.export.rawValue == 0)
        #expect(NBDInfoType.name.rawValue == 1)
        #expect(NBDInfoType.description.rawValue == 2)
        #expect(NBDInfoType.blockSize.rawValue == 3)
    }

    @Test(arguments: [
        (NBDTransmissionFlags.hasFlags, 0), (.readOnly, 1), (.sendFlush, 2), (.sendFUA, 3), (.rotational, 4),
        (.sendTrim, 5), (.sendWriteZeroes, 6), (.sendDF, 7), (.canMultiConn, 8), (.sendResize, 9),
        (.sendCache, 10), (.sendFastZero, 11), (.blockStatusPayload, 12),
    ])
    func transmissionFlags(flag: NBDTransmissionFlags, bit: Int) {
        #expect(flag.rawValue == 1 << bit)
    }

    @Test(arguments: [
        (NBDCommandType.read, UInt16(0)), (.write, 1), (.disconnect, 2), (.flush, 3), (.trim, 4), (.cache, 5),
        (.writeZeroes, 6), (.blockStatus, 7), (.resize, 8),
    ])
    func commandTypes(type: NBDCommandType, value: UInt16) {
        #expect(type.rawValue == value)
    }

    @Test(arguments: [
        (NBDCommandFlags.fua, UInt16(1)), (.noHole, 2), (.dontFragment, 4), (.requestOne, 8), (.fastZero, 16),
        (.payloadLength, 32),
    ])
    func commandFlags(flag: NBDCommandFlags, value: UInt16) {
        #expect(flag.rawValue == value)
    }

    @Test func structuredReplyTypesAndFlags() {
        #expect(NBDReplyType.none.rawValue == 0)
        #expect(NBDReplyType.offsetData.rawValue == 1)
        #expect(NBDReplyType.offsetHole.rawValue == 2)
        #expect(NBDReplyType.blockStatus.rawValue == 5)
        #expect(NBDReplyType.error.rawValue == 0x8001)
        #expect(NBDReplyType.errorOffset.rawValue == 0x8002)
        #expect(NBDReplyType.error.isError && NBDReplyType.errorOffset.isError)
        #expect(!NBDReplyType.offsetData.isError && !NBDReplyType.blockStatus.isError)
        #expect(NBDReplyFlags.done.rawValue == 1)
        #expect(NBDAllocationState.hole.rawValue == 1)
        #expect(NBDAllocationState.zero.rawValue == 2)
    }

    @Test(arguments: [
        (NBDErrno.eperm, UInt32(1)), (.eio, 5), (.enomem, 12), (.einval, 22), (.enospc, 28), (.eoverflow, 75),
        (.enotsup, 95), (.eshutdown, 108),
    ])
    func errnoValues(errno: NBDErrno, value: UInt32) {
        #expect(errno.rawValue == value)
    }

    @Test func unknownValuesStayRepresentable() {
        #expect(NBDCommandType(rawValue: 0xbeef).description == "NBD_CMD(48879)")
        #expect(NBDOption(rawValue: 99) != .go)
        #expect(NBDErrno(rawValue: 4) != .eio)
    }

    @Test func blockSizeConstraintsValidation() throws {
        #expect(NBDBlockSizeConstraints.default.minimum == 1)
        #expect(NBDBlockSizeConstraints.default.preferred == 4096)
        #expect(NBDBlockSizeConstraints.default.maximum == 1 << 25)
        _ = try NBDBlockSizeConstraints(minimum: 512, preferred: 4096, maximum: 0xffff_ffff)
        #expect(throws: NBDBlockSizeConstraints.ValidationError.invalidMinimum(3)) {
            try NBDBlockSizeConstraints(minimum: 3, preferred: 4096, maximum: 4096)
        }
        #expect(throws: NBDBlockSizeConstraints.ValidationError.invalidMinimum(1 << 17)) {
            try NBDBlockSizeConstraints(minimum: 1 << 17, preferred: 1 << 17, maximum: 1 << 20)
        }
        #expect(throws: NBDBlockSizeConstraints.ValidationError.invalidPreferred(256)) {
            try NBDBlockSizeConstraints(minimum: 1, preferred: 256, maximum: 4096)
        }
        #expect(throws: NBDBlockSizeConstraints.ValidationError.invalidPreferred(512)) {
            try NBDBlockSizeConstraints(minimum: 4096, preferred: 512, maximum: 4096)
        }
        #expect(throws: NBDBlockSizeConstraints.ValidationError.invalidMaximum(1000)) {
            try NBDBlockSizeConstraints(minimum: 512, preferred: 1024, maximum: 1000)
        }
    }
}
