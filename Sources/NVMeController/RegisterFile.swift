import NVMe

/// The BAR0 registers the host can read (NVMe Base Specification 2.0, §3.1.3):
/// CAP, VS, INTMS, CC, CSTS, AQA, ASQ, ACQ. Guarded by the ``TrapMailbox`` lock:
/// a trap records its value here before the controller acts on it, so a read
/// right after a write sees the written value, as on real hardware.
struct RegisterFile: Sendable {
    let capabilities: ControllerCapabilities
    let version: NVMeVersion
    var interruptMask: UInt32 = 0
    var configuration = ControllerConfiguration(raw: 0)
    var status = ControllerStatus(raw: 0)
    var adminQueueAttributes = AdminQueueAttributes(raw: 0)
    var adminSubmissionQueueBase: UInt64 = 0
    var adminCompletionQueueBase: UInt64 = 0

    /// Records a host write. Read-only registers and reserved offsets ignore it.
    mutating func record(_ w: RegisterWrite) {
        switch (w.offset, w.width) {
        case (RegisterOffset.intms, 4): interruptMask |= UInt32(truncatingIfNeeded: w.value)
        case (RegisterOffset.intmc, 4): interruptMask &= ~UInt32(truncatingIfNeeded: w.value)
        case (RegisterOffset.cc, 4): configuration.raw = UInt32(truncatingIfNeeded: w.value)
        case (RegisterOffset.aqa, 4): adminQueueAttributes.raw = UInt32(truncatingIfNeeded: w.value) & 0x0FFF_0FFF
        case (RegisterOffset.asq, 8): adminSubmissionQueueBase = w.value
        case (RegisterOffset.asq, 4): adminSubmissionQueueBase = replaceLow(adminSubmissionQueueBase, w.value)
        case (RegisterOffset.asq + 4, 4): adminSubmissionQueueBase = replaceHigh(adminSubmissionQueueBase, w.value)
        case (RegisterOffset.acq, 8): adminCompletionQueueBase = w.value
        case (RegisterOffset.acq, 4): adminCompletionQueueBase = replaceLow(adminCompletionQueueBase, w.value)
        case (RegisterOffset.acq + 4, 4): adminCompletionQueueBase = replaceHigh(adminCompletionQueueBase, w.value)
        default: break
        }
    }

    /// The value a host read sees; doorbells and reserved offsets read as 0.
    func read(offset: UInt32, width: Int) -> UInt64 {
        func sized(_ v64: UInt64, _ base: UInt32) -> UInt64 {
            if width == 8 { return offset == base ? v64 : 0 }
            return offset == base ? v64 & 0xFFFF_FFFF : v64 >> 32
        }
        switch offset {
        case RegisterOffset.cap, RegisterOffset.cap + 4: return sized(capabilities.raw, RegisterOffset.cap)
        case RegisterOffset.vs: return UInt64(version.raw)
        case RegisterOffset.intms, RegisterOffset.intmc: return UInt64(interruptMask)
        case RegisterOffset.cc: return UInt64(configuration.raw)
        case RegisterOffset.csts: return UInt64(status.raw)
        case RegisterOffset.aqa: return UInt64(adminQueueAttributes.raw)
        case RegisterOffset.asq, RegisterOffset.asq + 4: return sized(adminSubmissionQueueBase, RegisterOffset.asq)
        case RegisterOffset.acq, RegisterOffset.acq + 4: return sized(adminCompletionQueueBase, RegisterOffset.acq)
        default: return 0
        }
    }

    private func replaceLow(_ old: UInt64, _ v: UInt64) -> UInt64 { (old & 0xFFFF_FFFF_0000_0000) | (v & 0xFFFF_FFFF) }
    private func replaceHigh(_ old: UInt64, _ v: UInt64) -> UInt64 { (old & 0xFFFF_FFFF) | (v & 0xFFFF_FFFF) << 32 }
}
