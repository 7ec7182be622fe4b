#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A `--pid-file` that could not be written.
public struct PIDFileError: Error, Hashable, Sendable, CustomStringConvertible {
    public var path: String
    public var error: SystemErrno
    public var description: String { "--pid-file \(path): \(error)" }
}

/// The server's pid in a file ("PID\n", as nbdkit and qemu-nbd write it),
/// written once every listener is ready and removed when the server exits.
public struct PIDFile: Sendable {
    public let path: String

    /// Writes this process's pid to `path` atomically (a temporary file in the
    /// same directory, then rename(2)), so a reader never sees a partial file.
    public init(writingTo path: String) throws(PIDFileError) {
        self.path = path
        let temporary = path + ".\(getpid()).tmp"
        let text = "\(getpid())\n"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw PIDFileError(path: path, error: SystemErrno(errno)) }
        let written = text.utf8CString.withUnsafeBufferPointer { b in
            write(fd, b.baseAddress, b.count - 1)
        }
        let writeErrno = errno
        close(fd)
        guard written == text.utf8.count else {
            unlink(temporary)
            throw PIDFileError(path: path, error: SystemErrno(written < 0 ? writeErrno : EIO))
        }
        guard rename(temporary, path) == 0 else {
            let e = errno
            unlink(temporary)
            throw PIDFileError(path: path, error: SystemErrno(e))
        }
    }

    /// Removes the file if it still holds this process's pid (a later server may
    /// have taken the path over).
    public func remove() {
        var buffer = [UInt8](repeating: 0, count: 32)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        close(fd)
        guard n > 0 else { return }
        let text = String(decoding: buffer[..<n], as: UTF8.self)
        if text == "\(getpid())\n" { unlink(path) }
    }
}
