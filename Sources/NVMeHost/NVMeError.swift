import NVMe

/// What went wrong in the host driver, and where.
public struct NVMeError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        /// The controller completed the command with this status.
        case status(NVMeStatus)
        /// The controller was reset (or failed) while the command was outstanding and
        /// the retries ran out, or the driver is shutting down.
        case aborted(reason: String)
        /// No DMA memory was left for the data or PRP lists.
        case outOfDMAMemory(bytes: Int)
        /// The request cannot be expressed as NVMe commands (bad range, size, namespace).
        case invalidRequest(String)
        /// The controller did not answer in time (bring-up, admin commands).
        case timeout(String)
        /// CSTS.CFS: the controller reported a fatal error.
        case controllerFatal
    }

    public var kind: Kind
    /// The command or step that failed, e.g. "Read nsid 1 lba 0+8" or "enable".
    public var operation: String

    public init(_ kind: Kind, operation: String) {
        self.kind = kind
        self.operation = operation
    }

    /// The NVMe status when the controller reported one.
    public var status: NVMeStatus? {
        if case .status(let s) = kind { return s }
        return nil
    }

    public var description: String {
        let what: String
        switch kind {
        case .status(let s): what = "NVMe status \(s) (SCT \(s.codeType) SC 0x\(String(s.code, radix: 16)))"
        case .aborted(let r): what = "aborted: \(r)"
        case .outOfDMAMemory(let n): what = "out of DMA memory for \(n) bytes"
        case .invalidRequest(let s): what = "invalid request: \(s)"
        case .timeout(let s): what = "timed out: \(s)"
        case .controllerFatal: what = "controller fatal status (CSTS.CFS)"
        }
        return "\(operation): \(what)"
    }
}
