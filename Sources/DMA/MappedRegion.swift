#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Sole owner of an anonymous memory mapping. Pages are only backed when first
/// touched (`MAP_NORESERVE`), so a large arena costs nothing until used.
///
/// Invariant: `base` points at `byteCount` readable and writable bytes for the whole
/// lifetime of the value; `deinit` unmaps them. Being `~Copyable`, there is exactly
/// one owner and no double unmap.
public struct MappedRegion: ~Copyable, @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let byteCount: Int

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case mmapFailed(bytes: Int, errno: Int32)
        public var description: String {
            switch self {
            case .mmapFailed(let n, let e): "mmap of \(n) bytes failed: \(String(cString: strerror(e)))"
            }
        }
    }

    public init(byteCount: Int) throws(Failure) {
        #if canImport(Glibc)
        let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE
        #else
        let flags = MAP_PRIVATE | MAP_ANON
        #endif
        guard let p = mmap(nil, byteCount, PROT_READ | PROT_WRITE, flags, -1, 0), p != MAP_FAILED else {
            throw .mmapFailed(bytes: byteCount, errno: errno)
        }
        base = p
        self.byteCount = byteCount
    }

    deinit {
        munmap(base, byteCount)
    }
}
