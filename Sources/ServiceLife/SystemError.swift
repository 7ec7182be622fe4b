#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An errno value with its strerror(3) text, for error messages.
public struct SystemErrno: Error, Hashable, Sendable, CustomStringConvertible {
    public var code: Int32
    public init(_ code: Int32) { self.code = code }
    /// From a `-errno` return value.
    init(negated r: Int32) { code = -r }
    public var description: String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return "\(String(cString: text)) (errno \(code))"
    }
}

/// A system call on a path that failed (replacing a file, writing the pid
/// file, probing a Unix socket): what was being done, the path, and the errno.
public struct PathError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What was being done, as the message's first words ("--pid-file", "cannot check Unix socket").
    public var doing: String
    public var path: String
    public var error: SystemErrno
    public var description: String { "\(doing) \(path): \(error)" }
}
