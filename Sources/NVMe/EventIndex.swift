/// The EventIdx rule of the Doorbell Buffer Config feature (NVMe 1.3 §5.7 and the
/// Linux nvme-pci driver's `nvme_dbbuf_need_event`).
///
/// After moving a doorbell value from `old` to `new` in the Shadow Doorbell buffer,
/// the host must also write the real (MMIO) doorbell exactly when the controller's
/// EventIdx lies in the wrapped range `[old, new)`: the controller asked to be told
/// when the value passes `eventIndex`.
public enum EventIndex {
    /// `true` when the host must ring the MMIO doorbell.
    ///
    /// `UInt16(new &- eventIndex &- 1) < UInt16(new &- old)`; exact for every queue
    /// size up to 65536 as long as all three values are valid queue indices.
    @inlinable
    public static func needsEvent(eventIndex: UInt16, new: UInt16, old: UInt16) -> Bool {
        (new &- eventIndex &- 1) < (new &- old)
    }

    /// The definition the formula implements, for a queue of `queueSize` entries:
    /// does `eventIndex` lie in the half-open range from `old` to `new`, walking
    /// forward and wrapping at `queueSize`?
    public static func liesInWrappedRange(eventIndex: Int, new: Int, old: Int, queueSize: Int) -> Bool {
        var i = old
        while i != new {
            if i == eventIndex { return true }
            i = (i + 1) % queueSize
        }
        return false
    }
}
