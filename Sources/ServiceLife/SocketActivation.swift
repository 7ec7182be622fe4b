import CService

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A listening socket handed over by the process that started this one
/// (systemd socket activation, libnbd's `nbd_connect_systemd_socket_activation`).
public struct InheritedListener: Sendable, Hashable, CustomStringConvertible {
    /// The address family, named as the log shows it.
    public enum Family: String, Sendable, Hashable {
        case unix
        case inet = "tcp"
        case inet6 = "tcp6"
    }
    /// The descriptor (3, 4, ...).
    public var descriptor: Int32
    public var family: Family
    /// Its name from `LISTEN_FDNAMES`, when given.
    public var name: String?

    public init(descriptor: Int32, family: Family, name: String? = nil) {
        self.descriptor = descriptor
        self.family = family
        self.name = name
    }

    public var description: String { "fd \(descriptor) (\(family.rawValue)\(name.map { ", \($0)" } ?? ""))" }
}

/// Why the inherited descriptors cannot be used.
public enum SocketActivationError: Error, Hashable, Sendable, CustomStringConvertible {
    /// `LISTEN_FDS` or `LISTEN_PID` is not a number in range.
    case malformed(variable: String, value: String)
    /// Descriptor `descriptor` is not a listening stream socket of a family the server speaks.
    case unusableDescriptor(descriptor: Int32, problem: SystemErrno)

    public var description: String {
        switch self {
        case .malformed(let variable, let value):
            return "socket activation: \(variable)='\(value)' is not a valid value"
        case .unusableDescriptor(let fd, let problem):
            let why: String
            switch problem.code {
            case ENOTSOCK: why = "not a socket"
            case EINVAL: why = "not a listening stream socket (Unix, IPv4 or IPv6)"
            default: why = "\(problem)"
            }
            return "socket activation: inherited descriptor \(fd) is \(why)"
        }
    }
}

/// The systemd socket activation protocol, as sd_listen_fds(3) describes it:
/// when `LISTEN_PID` equals this process's pid, descriptors 3 ...
/// 3 + `LISTEN_FDS` - 1 are listening sockets passed in (named by the
/// colon-separated `LISTEN_FDNAMES`, when present). nbdkit and qemu-nbd accept
/// exactly this.
public enum SocketActivation {
    /// sd_listen_fds(3)'s SD_LISTEN_FDS_START.
    public static let firstDescriptor: Int32 = 3

    /// The inherited listeners, or nil when the process was not socket-activated
    /// (no `LISTEN_FDS`, or `LISTEN_PID` names another process: the variables
    /// were meant for a parent). Like `sd_listen_fds(1)` it unsets `LISTEN_PID`,
    /// `LISTEN_FDS` and `LISTEN_FDNAMES`, so children (a `--run` command) do not
    /// take them for their own, and marks every descriptor close-on-exec.
    public static func takeListeners() throws(SocketActivationError) -> [InheritedListener]? {
        let pidText = environment("LISTEN_PID")
        let countText = environment("LISTEN_FDS")
        let namesText = environment("LISTEN_FDNAMES")
        defer {
            unsetenv("LISTEN_PID")
            unsetenv("LISTEN_FDS")
            unsetenv("LISTEN_FDNAMES")
        }
        guard let pidText, let countText else { return nil }
        guard let pid = Int32(pidText), pid > 0 else { throw .malformed(variable: "LISTEN_PID", value: pidText) }
        guard pid == getpid() else { return nil }
        guard let count = Int32(countText), count >= 0, count <= 1024 else {
            throw .malformed(variable: "LISTEN_FDS", value: countText)
        }
        let names = namesText.map { $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init) }
        var listeners: [InheritedListener] = []
        for i in 0..<count {
            let fd = firstDescriptor + i
            let r = cservice_listening_socket(fd)
            let family: InheritedListener.Family
            switch r {
            case Int32(CSERVICE_FAMILY_UNIX): family = .unix
            case Int32(CSERVICE_FAMILY_INET): family = .inet
            case Int32(CSERVICE_FAMILY_INET6): family = .inet6
            default: throw .unusableDescriptor(descriptor: fd, problem: SystemErrno(negated: r))
            }
            let name = names.flatMap { Int(i) < $0.count ? $0[Int(i)] : nil }
            listeners.append(InheritedListener(descriptor: fd, family: family, name: name))
        }
        return listeners
    }

    static func environment(_ name: String) -> String? {
        guard let v = getenv(name) else { return nil }
        return String(cString: v)
    }
}
