import DMA
import NVMe

/// Which way a block transfer moves data, and the DMA buffer it moves through.
public enum BlockTransfer: Sendable {
    /// Read: the namespace's blocks into the buffer.
    case read(into: DMABuffer)
    /// Write: the buffer's bytes to the namespace.
    case write(from: DMABuffer)

    var command: (IOOpcode, DMABuffer) {
        switch self {
        case .read(let buffer): (.read, buffer)
        case .write(let buffer): (.write, buffer)
        }
    }
}
