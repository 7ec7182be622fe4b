#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Replaces the file at `path` with `bytes` atomically: a temporary file in the same
/// directory (`PATH.PID.tmp`), written in full, then rename(2), so a reader sees
/// the old file or the new one, never a partial one.
///
/// Foundation's `Data.write(options: .atomic)` does the same on Linux but leaves an
/// empty `TemporaryDirectory.XXXXXX` behind in the temporary directory on every call
/// (hundreds per test run here), which a server writing `--stats-json` on every
/// SIGUSR1 must not do.
/// A failure names the file and the errno of the step that failed.
public func replaceFileAtomically(_ path: String, with bytes: [UInt8]) throws(PathError) {
    let temporary = path + ".\(getpid()).tmp"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw PathError(doing: "cannot replace", path: path, error: SystemErrno(errno)) }
    var done = 0
    var failure: Int32 = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
        if n < 0 {
            if errno == EINTR { continue }
            failure = errno
            break
        }
        done += n
    }
    close(fd)
    if failure == 0, rename(temporary, path) != 0 { failure = errno }
    if failure != 0 {
        unlink(temporary)
        throw PathError(doing: "cannot replace", path: path, error: SystemErrno(failure))
    }
}
