/// The Status Field of a completion queue entry (NVMe Base Specification 2.0,
/// §4.6.1, Figure 92): Status Code Type, Status Code, More and Do Not Retry.
public struct NVMeStatus: Hashable, Sendable, CustomStringConvertible {
    /// Status Code Type (§4.6.1.1, Figure 93).
    public enum CodeType: UInt8, Sendable {
        case generic = 0
        case commandSpecific = 1
        case mediaAndDataIntegrity = 2
        case path = 3
        case vendorSpecific = 7
    }

    public var codeType: UInt8
    public var code: UInt8
    public var more: Bool
    public var doNotRetry: Bool

    public init(type: CodeType, code: UInt8, doNotRetry: Bool = false, more: Bool = false) {
        self.codeType = type.rawValue
        self.code = code
        self.doNotRetry = doNotRetry
        self.more = more
    }

    /// Decodes the 15-bit status field (CQE DW3 bits 31:17, already shifted down by 1).
    public init(field: UInt16) {
        code = UInt8(truncatingIfNeeded: field)
        codeType = UInt8((field >> 8) & 0x7)
        more = field & (1 << 13) != 0
        doNotRetry = field & (1 << 14) != 0
    }

    /// The 15-bit status field as carried in CQE DW3 bits 31:17.
    public var field: UInt16 {
        UInt16(code) | UInt16(codeType & 0x7) << 8 | (more ? 1 << 13 : 0) | (doNotRetry ? 1 << 14 : 0)
    }

    public var isSuccess: Bool { codeType == 0 && code == 0 }

    /// The same status with DNR set.
    public var dnr: NVMeStatus { var s = self; s.doNotRetry = true; return s }

    // MARK: Generic Command Status (§4.6.1.2.1, Figure 94)
    public static let success = NVMeStatus(type: .generic, code: 0x00)
    public static let invalidCommandOpcode = NVMeStatus(type: .generic, code: 0x01, doNotRetry: true)
    public static let invalidField = NVMeStatus(type: .generic, code: 0x02, doNotRetry: true)
    public static let commandIDConflict = NVMeStatus(type: .generic, code: 0x03, doNotRetry: true)
    public static let dataTransferError = NVMeStatus(type: .generic, code: 0x04)
    public static let commandAbortedPowerLoss = NVMeStatus(type: .generic, code: 0x05)
    public static let internalError = NVMeStatus(type: .generic, code: 0x06)
    public static let commandAbortRequested = NVMeStatus(type: .generic, code: 0x07)
    public static let commandAbortedSQDeletion = NVMeStatus(type: .generic, code: 0x08)
    public static let commandSequenceError = NVMeStatus(type: .generic, code: 0x0C, doNotRetry: true)
    public static let invalidNamespaceOrFormat = NVMeStatus(type: .generic, code: 0x0B, doNotRetry: true)
    public static let invalidPRPOffset = NVMeStatus(type: .generic, code: 0x13, doNotRetry: true)
    public static let lbaOutOfRange = NVMeStatus(type: .generic, code: 0x80, doNotRetry: true)
    public static let capacityExceeded = NVMeStatus(type: .generic, code: 0x81, doNotRetry: true)
    public static let namespaceNotReady = NVMeStatus(type: .generic, code: 0x82)

    // MARK: Command Specific Status (§4.6.1.2.2, Figure 95)
    public static let completionQueueInvalid = NVMeStatus(type: .commandSpecific, code: 0x00, doNotRetry: true)
    public static let invalidQueueIdentifier = NVMeStatus(type: .commandSpecific, code: 0x01, doNotRetry: true)
    public static let invalidQueueSize = NVMeStatus(type: .commandSpecific, code: 0x02, doNotRetry: true)
    public static let abortCommandLimitExceeded = NVMeStatus(type: .commandSpecific, code: 0x03, doNotRetry: true)
    public static let asynchronousEventRequestLimitExceeded = NVMeStatus(
        type: .commandSpecific, code: 0x05, doNotRetry: true)
    public static let invalidInterruptVector = NVMeStatus(type: .commandSpecific, code: 0x08, doNotRetry: true)
    public static let invalidLogPage = NVMeStatus(type: .commandSpecific, code: 0x09, doNotRetry: true)
    public static let invalidQueueDeletion = NVMeStatus(type: .commandSpecific, code: 0x0C, doNotRetry: true)
    public static let featureIdentifierNotSaveable = NVMeStatus(type: .commandSpecific, code: 0x0D, doNotRetry: true)
    /// Attempted Write to Read Only Range (NVM Command Set, Figure 23).
    public static let attemptedWriteToReadOnlyRange = NVMeStatus(type: .commandSpecific, code: 0x82, doNotRetry: true)

    // MARK: Media and Data Integrity Errors (§4.6.1.2.3, Figure 96)
    public static let writeFault = NVMeStatus(type: .mediaAndDataIntegrity, code: 0x80)
    public static let unrecoveredReadError = NVMeStatus(type: .mediaAndDataIntegrity, code: 0x81)

    // MARK: Vendor Specific (SCT 7h)
    /// Write Zeroes with ``SubmissionQueueEntry/fastZeroOnlyBit`` that could only be
    /// done by writing zeroes: nothing was changed (this emulation's extension).
    public static let zeroingNotFast = NVMeStatus(type: .vendorSpecific, code: 0xC0, doNotRetry: true)

    /// Namespace is Write Protected (§4.6.1.2.1, Figure 94, 20h).
    public static let namespaceWriteProtected = NVMeStatus(type: .generic, code: 0x20, doNotRetry: true)

    /// Status Code Type and Status Code, without More and Do Not Retry: what
    /// ``name`` looks up.
    private var key: UInt16 { UInt16(codeType) << 8 | UInt16(code) }

    /// The specification's name of each status above.
    private static let names: [UInt16: String] = [
        success.key: "Successful Completion",
        invalidCommandOpcode.key: "Invalid Command Opcode",
        invalidField.key: "Invalid Field in Command",
        commandIDConflict.key: "Command ID Conflict",
        dataTransferError.key: "Data Transfer Error",
        commandAbortedPowerLoss.key: "Commands Aborted due to Power Loss Notification",
        internalError.key: "Internal Error",
        commandAbortRequested.key: "Command Abort Requested",
        commandAbortedSQDeletion.key: "Command Aborted due to SQ Deletion",
        invalidNamespaceOrFormat.key: "Invalid Namespace or Format",
        commandSequenceError.key: "Command Sequence Error",
        invalidPRPOffset.key: "Invalid PRP Offset",
        namespaceWriteProtected.key: "Namespace is Write Protected",
        lbaOutOfRange.key: "LBA Out of Range",
        capacityExceeded.key: "Capacity Exceeded",
        namespaceNotReady.key: "Namespace Not Ready",
        completionQueueInvalid.key: "Completion Queue Invalid",
        invalidQueueIdentifier.key: "Invalid Queue Identifier",
        invalidQueueSize.key: "Invalid Queue Size",
        abortCommandLimitExceeded.key: "Abort Command Limit Exceeded",
        asynchronousEventRequestLimitExceeded.key: "Asynchronous Event Request Limit Exceeded",
        invalidInterruptVector.key: "Invalid Interrupt Vector",
        invalidLogPage.key: "Invalid Log Page",
        invalidQueueDeletion.key: "Invalid Queue Deletion",
        featureIdentifierNotSaveable.key: "Feature Identifier Not Saveable",
        attemptedWriteToReadOnlyRange.key: "Attempted Write to Read Only Range",
        writeFault.key: "Write Fault",
        unrecoveredReadError.key: "Unrecovered Read Error",
        zeroingNotFast.key: "Zeroing Not Fast (vendor specific)",
    ]

    public var name: String { Self.names[key] ?? "Status SCT \(codeType) SC 0x\(String(code, radix: 16))" }

    public var description: String {
        name + (doNotRetry ? " (DNR)" : "")
    }
}
