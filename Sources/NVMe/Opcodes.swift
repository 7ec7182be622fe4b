/// Admin Command Set opcodes (NVMe Base Specification 2.0, §5, Figure 28). Any
/// byte is representable: the controller answers one it does not implement with
/// Invalid Command Opcode, as Figure 28's unassigned values ask.
public struct AdminOpcode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let deleteIOSubmissionQueue = AdminOpcode(rawValue: 0x00)
    public static let createIOSubmissionQueue = AdminOpcode(rawValue: 0x01)
    public static let getLogPage = AdminOpcode(rawValue: 0x02)
    public static let deleteIOCompletionQueue = AdminOpcode(rawValue: 0x04)
    public static let createIOCompletionQueue = AdminOpcode(rawValue: 0x05)
    public static let identify = AdminOpcode(rawValue: 0x06)
    public static let abort = AdminOpcode(rawValue: 0x08)
    public static let setFeatures = AdminOpcode(rawValue: 0x09)
    public static let getFeatures = AdminOpcode(rawValue: 0x0A)
    public static let asynchronousEventRequest = AdminOpcode(rawValue: 0x0C)
    public static let keepAlive = AdminOpcode(rawValue: 0x18)
    /// Doorbell Buffer Config (NVMe 1.3 §5.7; advertised by OACS bit 8).
    public static let doorbellBufferConfig = AdminOpcode(rawValue: 0x7C)

    /// Figure 28's name of each command above.
    private static let names: [AdminOpcode: String] = [
        .deleteIOSubmissionQueue: "Delete I/O Submission Queue",
        .createIOSubmissionQueue: "Create I/O Submission Queue",
        .getLogPage: "Get Log Page",
        .deleteIOCompletionQueue: "Delete I/O Completion Queue",
        .createIOCompletionQueue: "Create I/O Completion Queue",
        .identify: "Identify",
        .abort: "Abort",
        .setFeatures: "Set Features",
        .getFeatures: "Get Features",
        .asynchronousEventRequest: "Asynchronous Event Request",
        .keepAlive: "Keep Alive",
        .doorbellBufferConfig: "Doorbell Buffer Config",
    ]

    public var description: String { Self.names[self] ?? "admin opcode 0x\(String(rawValue, radix: 16))" }
}

/// NVM Command Set I/O opcodes (NVM Command Set Specification 1.0, §3, Figure 19),
/// plus this device's one vendor-specific command.
public enum IOOpcode: UInt8, Sendable, CustomStringConvertible {
    /// §3.2.2: make volatile writes durable.
    case flush = 0x00
    /// §3.2.6, with Force Unit Access (CDW12 bit 30).
    case write = 0x01
    /// §3.2.4.
    case read = 0x02
    /// §3.2.8, with Deallocate (CDW12 bit 25).
    case writeZeroes = 0x08
    /// §3.2.3: here only the Deallocate attribute (AD) is acted on.
    case datasetManagement = 0x09
    /// Vendor specific (opcodes 80h–FFh are vendor specific, §3): **Get Allocation
    /// Map**. Data direction controller-to-host (opcode bits 1:0 = 10b).
    /// See ``AllocationMapDescriptor`` for the command and data layout.
    case getAllocationMap = 0x82

    /// Figure 19's name of the command.
    public var description: String {
        switch self {
        case .flush: "Flush"
        case .write: "Write"
        case .read: "Read"
        case .writeZeroes: "Write Zeroes"
        case .datasetManagement: "Dataset Management"
        case .getAllocationMap: "Get Allocation Map"
        }
    }
}

/// Feature identifiers for Get/Set Features (NVMe Base Specification 2.0, §5.27.1,
/// Figure 271). Any byte is representable: an identifier the controller does not
/// support is answered Invalid Field in Command.
public struct FeatureIdentifier: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let arbitration = FeatureIdentifier(rawValue: 0x01)
    public static let powerManagement = FeatureIdentifier(rawValue: 0x02)
    public static let temperatureThreshold = FeatureIdentifier(rawValue: 0x04)
    public static let volatileWriteCache = FeatureIdentifier(rawValue: 0x06)
    public static let numberOfQueues = FeatureIdentifier(rawValue: 0x07)
    public static let interruptCoalescing = FeatureIdentifier(rawValue: 0x08)
    public static let interruptVectorConfiguration = FeatureIdentifier(rawValue: 0x09)
    public static let asynchronousEventConfiguration = FeatureIdentifier(rawValue: 0x0B)
}

/// Identify CNS values (NVMe Base Specification 2.0, §5.17.1, Figure 273).
public enum IdentifyCNS: UInt8, Sendable {
    case namespace = 0x00
    case controller = 0x01
    case activeNamespaceList = 0x02
    /// I/O Command Set Independent Identify Namespace (NVMe 2.0, §5.17.2.9).
    case namespaceIndependent = 0x08
}
