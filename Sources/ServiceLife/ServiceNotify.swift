import CService

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A notification that could not be sent.
public struct ServiceNotifyError: Error, Hashable, Sendable, CustomStringConvertible {
    public var socket: String
    public var state: String
    public var error: SystemErrno
    public var description: String { "cannot send '\(state)' to NOTIFY_SOCKET \(socket): \(error)" }
}

/// The service manager notification protocol of sd_notify(3): one datagram of
/// newline-separated `VARIABLE=value` assignments to the AF_UNIX socket named by
/// `NOTIFY_SOCKET` (a path, or an abstract name written with a leading '@').
public enum ServiceNotify {
    /// The `NOTIFY_SOCKET` value, or nil when no service manager listens.
    public static var socket: String? {
        guard let v = getenv("NOTIFY_SOCKET") else { return nil }
        let s = String(cString: v)
        return s.isEmpty ? nil : s
    }

    /// Sends `state` (such as "READY=1" or "STOPPING=1"). Returns false when
    /// `NOTIFY_SOCKET` is not set (nothing to tell, as sd_notify(3) returns 0).
    @discardableResult
    public static func notify(_ state: String) throws(ServiceNotifyError) -> Bool {
        guard let socket else { return false }
        let r = cservice_notify(socket, state)
        guard r == 0 else { throw ServiceNotifyError(socket: socket, state: state, error: SystemErrno(negated: r)) }
        return true
    }
}
