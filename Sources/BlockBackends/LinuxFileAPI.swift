#if os(Linux)
import Glibc

/// Linux file APIs that Swift's Glibc module does not import: it is built without
/// `_GNU_SOURCE`, so `fallocate(2)`, `pwritev2(2)`, `SEEK_DATA`/`SEEK_HOLE` and the
/// `FALLOC_FL_*` / `RWF_*` constants are invisible to Swift.
///
/// The functions are looked up once with `dlsym` and called through `@convention(c)`
/// function pointers, which gives the exact C calling convention (unlike
/// `@_silgen_name`). A missing symbol (an old C library) yields `nil` and the
/// backend falls back to portable calls.
enum LinuxFileAPI {
    typealias FallocateFunction = @convention(c) (CInt, CInt, off_t, off_t) -> CInt
    typealias Pwritev2Function = @convention(c) (CInt, UnsafePointer<iovec>?, CInt, off_t, CInt) -> Int

    /// `int fallocate(int fd, int mode, off_t offset, off_t len)` (off_t is 64-bit on
    /// every 64-bit Linux ABI).
    static let fallocate: FallocateFunction? = lookup("fallocate")
    /// `ssize_t pwritev2(int fd, const struct iovec *iov, int iovcnt, off_t offset, int flags)`
    /// (glibc 2.26+).
    static let pwritev2: Pwritev2Function? = lookup("pwritev2")

    // <linux/falloc.h>
    static let FALLOC_FL_KEEP_SIZE: CInt = 0x01
    static let FALLOC_FL_PUNCH_HOLE: CInt = 0x02
    static let FALLOC_FL_ZERO_RANGE: CInt = 0x10
    // <linux/fs.h>
    static let RWF_DSYNC: CInt = 0x02
    /// `_IOR(0x12, 114, size_t)`: the size of a block device in bytes.
    static let BLKGETSIZE64: UInt = 0x8008_1272
    // <unistd.h> with _GNU_SOURCE (Linux values; Darwin's are swapped)
    static let SEEK_DATA: CInt = 3
    static let SEEK_HOLE: CInt = 4

    private static func lookup<F>(_ name: String) -> F? {
        // A nil handle is RTLD_DEFAULT: search the global symbol scope (libc included).
        guard let symbol = dlsym(nil, name) else { return nil }
        // The symbol is the C function whose prototype the caller's typealias spells out.
        return unsafeBitCast(symbol, to: F.self)
    }
}
#endif
