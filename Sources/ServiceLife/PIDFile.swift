#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The server's pid in a file ("PID\n", as nbdkit and qemu-nbd write it),
/// written once every listener is ready and removed when the server exits.
public struct PIDFile: Sendable {
    public let path: String

    /// Writes this process's pid to `path` atomically (a temporary file in the
    /// same directory, then rename(2)), so a reader never sees a partial file.
    /// A failure is named `--pid-file PATH: ...`.
    public init(writingTo path: String) throws(PathError) {
        self.path = path
        do {
            try replaceFileAtomically(path, with: Array("\(getpid())\n".utf8))
        } catch {
            throw PathError(doing: "--pid-file", path: path, error: error.error)
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
