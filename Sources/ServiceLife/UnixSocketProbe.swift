import CService

/// What is at a Unix socket path a server is about to bind.
public enum UnixSocketState: Sendable, Equatable {
    /// Nothing: bind as usual.
    case absent
    /// A socket file no process accepts on (connect(2) gives ECONNREFUSED): a
    /// server that died without removing it. Safe to replace.
    case stale
    /// Another process listens on it: binding would unlink its socket from under
    /// it (its clients could no longer connect), so refuse.
    case live
    /// A regular file, directory or anything else that is not a socket.
    case notASocket
}

public enum UnixSocketProbe {
    /// Looks at `path`: lstat(2), then a non-blocking connect(2) when it is a
    /// socket. A connection accepted or pending (a full backlog) is a live
    /// listener; ECONNREFUSED is a stale socket file.
    public static func state(of path: String) throws(PathError) -> UnixSocketState {
        let r = cservice_probe_unix_socket(path)
        switch r {
        case Int32(CSERVICE_PROBE_ABSENT): return .absent
        case Int32(CSERVICE_PROBE_STALE): return .stale
        case Int32(CSERVICE_PROBE_LIVE): return .live
        case Int32(CSERVICE_PROBE_NOT_SOCKET): return .notASocket
        default: throw PathError(doing: "cannot check Unix socket", path: path, error: SystemErrno(negated: r))
        }
    }
}
