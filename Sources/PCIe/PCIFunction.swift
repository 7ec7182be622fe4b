/// A PCI Express function as a driver sees it (PCI Express Base Specification;
/// NVMe over PCIe Transport Specification 1.0, §3): its memory BAR — registers,
/// doorbells and the MSI-X table — and the MSI-X interrupt messages it sends to
/// handlers the host programmed. Nothing else of the device is visible.
///
/// Every BAR write is a trap into the device (a VM exit, in a virtual machine):
/// the writer does not continue until the device has taken it. Reads return the
/// register's current value. The host owns the memory the device reads and
/// writes by DMA and hands it to the device when it is created, as a guest owns
/// its RAM.
public protocol PCIFunction: AnyObject, Sendable {
    /// A 32-bit read of BAR0 at `offset`.
    func read32(bar0 offset: UInt32) -> UInt32
    /// A 64-bit read of BAR0 at `offset` (CAP, ASQ, ACQ).
    func read64(bar0 offset: UInt32) -> UInt64
    /// A 32-bit write of BAR0 at `offset`: a trap.
    func write32(bar0 offset: UInt32, _ value: UInt32)
    /// A 64-bit write of BAR0 at `offset`: a trap.
    func write64(bar0 offset: UInt32, _ value: UInt64)

    /// The MSI-X capability: how many vectors the table has and where it lies in
    /// BAR0 (Table Offset with BIR 0). Each entry is ``MSIXTable/entrySize`` bytes.
    var msix: MSIXCapability { get }
    /// Programs vector `vector`'s message: the device delivers its interrupts to
    /// `handler` (the message address and data of a real table entry, which say
    /// where the interrupt goes). `handler` runs on the device's thread and must
    /// only hand the work over, never block or touch the device.
    func connectInterrupt(_ vector: Int, to handler: @escaping @Sendable () -> Void)
    /// Clears vector `vector`'s message: interrupts on it go nowhere.
    func disconnectInterrupt(_ vector: Int)
}

/// The MSI-X capability of a function (PCI Local Bus Specification 3.0, §6.8.2).
public struct MSIXCapability: Hashable, Sendable {
    /// Table Size + 1.
    public var vectors: Int
    /// Offset of the MSI-X table in BAR0.
    public var tableOffset: UInt32
    /// Offset of the Pending Bit Array in BAR0.
    public var pendingBitArrayOffset: UInt32

    /// A table of `vectors` entries at `tableOffset`, its Pending Bit Array at
    /// `pendingBitArrayOffset` or, by default, right after the table.
    public init(vectors: Int, tableOffset: UInt32, pendingBitArrayOffset: UInt32? = nil) {
        self.vectors = vectors
        self.tableOffset = tableOffset
        self.pendingBitArrayOffset = pendingBitArrayOffset ?? tableOffset + UInt32(vectors) * MSIXTable.entrySize
    }

    /// BAR0 offset just past the table.
    public var tableEnd: UInt32 { tableOffset + UInt32(vectors) * MSIXTable.entrySize }

    /// BAR0 offset of vector `n`'s Vector Control word (bit 0: Mask Bit).
    public func vectorControl(_ n: Int) -> UInt32 {
        tableOffset + UInt32(n) * MSIXTable.entrySize + MSIXTable.vectorControlOffset
    }

    /// The vector whose Vector Control word is at `offset`, if it is one.
    public func vector(atVectorControl offset: UInt32) -> Int? {
        guard offset >= tableOffset, offset < tableEnd,
            (offset - tableOffset) % MSIXTable.entrySize == MSIXTable.vectorControlOffset
        else { return nil }
        return Int((offset - tableOffset) / MSIXTable.entrySize)
    }

    /// Whether `offset` lies in the table or the Pending Bit Array.
    public func contains(_ offset: UInt32) -> Bool {
        (offset >= tableOffset && offset < tableEnd)
            || (offset >= pendingBitArrayOffset && offset < pendingBitArrayOffset + UInt32((vectors + 63) / 64 * 8))
    }
}

/// MSI-X table entry layout (PCI Local Bus Specification 3.0, §6.8.2.6–9).
public enum MSIXTable {
    public static let entrySize: UInt32 = 16
    /// Message Address (lower, upper) at 0 and 4, Message Data at 8, Vector Control at 12.
    public static let vectorControlOffset: UInt32 = 12
    /// Vector Control bit 0.
    public static let maskBit: UInt32 = 1
}
