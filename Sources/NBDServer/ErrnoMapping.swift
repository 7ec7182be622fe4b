import NBDProtocol
import NVMe
import NVMeHost

extension NBDErrno {
    /// The NBD error for a failed NVMe request (proto.md "Error values"):
    /// media errors are EIO, write protection EPERM, capacity ENOSPC, a range
    /// outside the namespace EINVAL (ENOSPC for writes), shutdown ESHUTDOWN.
    init(_ error: NVMeError, write: Bool) {
        switch error.kind {
        case .status(let s):
            switch (s.codeType, s.code) {
            case (0, 0x80): self = write ? .enospc : .einval  // LBA Out of Range
            case (0, 0x81): self = .enospc  // Capacity Exceeded
            case (0, 0x20), (1, 0x82): self = .eperm  // write protected
            case (0, 0x02), (0, 0x01), (0, 0x0B): self = .einval  // invalid field / opcode / namespace
            case (0, 0x08), (0, 0x07): self = .eshutdown  // aborted
            case (7, 0xC0): self = .enotsup  // zeroing not fast (FAST_ZERO)
            default: self = .eio
            }
        case .aborted: self = .eshutdown
        case .outOfDMAMemory: self = .enomem
        case .invalidRequest: self = .einval
        case .timeout, .controllerFatal: self = .eio
        }
    }
}
