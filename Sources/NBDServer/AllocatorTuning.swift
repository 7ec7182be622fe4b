#if os(Linux)
import CLinuxIO
#endif

/// glibc allocator settings for a server that allocates reply buffers of up to
/// 32 MiB many thousand times a second.
///
/// By default glibc serves blocks of 128 KiB and more with `mmap` and trims
/// freed heap memory eagerly, so every large read reply was a fresh mapping:
/// page faults and page clearing on the event loop, then `munmap` — half the
/// throughput of 1 MiB reads went there. Raising the `mmap` threshold above the
/// largest reply and the trim threshold well above what replies in flight hold
/// lets freed buffers be reused. (`mallopt` is called through the CLinuxIO
/// shim: Swift's Glibc module does not declare it.)
public enum AllocatorTuning {
    /// Applies the settings; returns whether glibc accepted them. Process-wide:
    /// call once at start-up.
    @discardableResult
    public static func apply(largestAllocation: Int = 64 << 20, retainedFreeMemory: Int = 512 << 20) -> Bool {
        #if os(Linux)
        return clinux_malloc_tuning(CInt(largestAllocation), CInt(retainedFreeMemory)) == 1
        #else
        return false
        #endif
    }
}
