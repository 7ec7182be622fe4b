#if canImport(Glibc)
import Glibc
#endif

/// glibc allocator settings for a server that allocates reply buffers of up to
/// 32 MiB many thousand times a second.
///
/// By default glibc serves blocks of 128 KiB and more with `mmap` and trims
/// freed heap memory eagerly, so every large read reply was a fresh mapping:
/// page faults and page clearing on the event loop, then `munmap` — half the
/// throughput of 1 MiB reads went there. Raising the `mmap` threshold above the
/// largest reply and the trim threshold well above what replies in flight hold
/// lets freed buffers be reused. (`mallopt` is looked up with `dlsym`: Swift's
/// Glibc module does not declare it.)
public enum AllocatorTuning {
    /// Applies the settings; returns whether glibc accepted them. Process-wide:
    /// call once at start-up.
    @discardableResult
    public static func apply(largestAllocation: Int = 64 << 20, retainedFreeMemory: Int = 512 << 20) -> Bool {
        #if os(Linux)
        typealias Mallopt = @convention(c) (CInt, CInt) -> CInt
        guard let symbol = dlsym(nil, "mallopt") else { return false }
        // The symbol is glibc's `int mallopt(int param, int value)`.
        let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
        let M_TRIM_THRESHOLD: CInt = -1
        let M_MMAP_THRESHOLD: CInt = -3
        let a = mallopt(M_MMAP_THRESHOLD, CInt(largestAllocation))
        let b = mallopt(M_TRIM_THRESHOLD, CInt(retainedFreeMemory))
        return a == 1 && b == 1
        #else
        return false
        #endif
    }
}
