/// Admin Command Set opcodes (NVMe Base Specification 2.0, §5, Figure 28).
public enum AdminOpcode: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case deleteIOSubmissionQueue = 0x00
    case createIOSubmissionQueue = 0x01
    case getLogPage = 0x02
    case deleteIOCompletionQueue = 0x04
    case createIOCompletionQueue = 0x05
    case identify = 0x06
    case abort = 0x08
    case setFeatures = 0x09
    case getFeatures = 0x0A
    case asynchronousEventRequest = 0x0C
    case keepAlive = 0x18
    /// Doorbell Buffer Config (NVMe 1.3 §5.7; advertised by OACS bit 8).
    case doorbellBufferConfig = 0x7C

    public var description: String {
        switch self {
        case .deleteIOSubmissionQueue: "Delete I/O SQ"
        case .createIOSubmissionQueue: "Create I/O SQ"
        case .getLogPage: "Get Log Page"
        case .deleteIOCompletionQueue: "Delete I/O CQ"
        case .createIOCompletionQueue: "Create I/O CQ"
        case .identify: "Identify"
        case .abort: "Abort"
        case .setFeatures: "Set Features"
        case .getFeatures: "Get Features"
        case .asynchronousEventRequest: "Asynchronous Event Request"
        case .keepAlive: "Keep Alive"
        case .doorbellBufferConfig: "Doorbell Buffer Config"
        }
    }
}

/// NVM Command Set I/O opcodes (NVM Command Set Specification 1.0, §3, Figure 19),
/// plus this device's one vendor-specific command.
public enum IOOpcode: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case flush = 0x00
    case write = 0x01
    case read = 0x02
    case writeZeroes = 0x08
    case datasetManagement = 0x09
    /// Vendor specific (opcodes 80h–FFh are vendor specific, §3): **Get Allocation
    /// Map**. Data direction controller-to-host (opcode bits 1:0 = 10b).
    /// See ``AllocationMapDescriptor`` for the command and data layout.
    case getAllocationMap = 0x82

    public var description: String {
        switch self {
        case .flush: "Flush"
        case .write: "Write"
        case .read: "Read"
        case .writeZeroes: "Write Zeroes"
        case .datasetManagement: "Dataset Management"
        case .getAllocationMap: "Get Allocation Map (vendor 82h)"
        }
    }
}

/// Feature identifiers for Get/Set Features (NVMe Base Specification 2.0, §5.27.1, Figure 271).
public enum FeatureIdentifier: UInt8, Sendable {
    case arbitration = 0x01
    case powerManagement = 0x02
    case temperatureThreshold = 0x04
    case volatileWriteCache = 0x06
    case numberOfQueues = 0x07
    case interruptCoalescing = 0x08
    case interruptVectorConfiguration = 0x09
    case asynchronousEventConfiguration = 0x0B
}

/// Identify CNS values (NVMe Base Specification 2.0, §5.17.1, Figure 273).
public enum IdentifyCNS: UInt8, Sendable {
    case namespace = 0x00
    case controller = 0x01
    case activeNamespaceList = 0x02
    /// I/O Command Set Independent Identify Namespace (NVMe 2.0, §5.17.2.9).
    case namespaceIndependent = 0x08
}
