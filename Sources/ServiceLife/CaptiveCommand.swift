import CService

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A `--run` command that could not be started or waited for.
public enum CaptiveCommandError: Error, Hashable, Sendable, CustomStringConvertible {
    case spawn(command: String, error: SystemErrno)
    case wait(pid: Int32, error: SystemErrno)

    public var description: String {
        switch self {
        case .spawn(let command, let error): return "--run: cannot start /bin/sh -c '\(command)': \(error)"
        case .wait(let pid, let error): return "--run: cannot wait for process \(pid): \(error)"
        }
    }
}

/// How a captive command ended.
public struct CaptiveExit: Hashable, Sendable, CustomStringConvertible {
    /// Its exit status, or 128 + the signal that ended it (as the shell and
    /// nbdkit report it): the status the server exits with.
    public var status: Int32
    /// The signal that ended it, or nil when it exited.
    public var signal: Int32?
    public init(status: Int32, signal: Int32?) {
        self.status = status
        self.signal = signal
    }
    public var description: String {
        signal.map { "killed by signal \($0)" } ?? "exit status \(status)"
    }
}

/// nbdkit-captive(1)'s `--run`: a shell command the server starts once it is
/// serving, with the connection details in its environment; the server stops
/// when it exits and exits with its status.
public final class CaptiveCommand: Sendable {
    public let command: String
    public let pid: Int32

    /// Starts `/bin/sh -c command` with this process's environment plus
    /// `variables` (replacing variables of the same name). Every signal starts
    /// at its default disposition with an empty mask in the child.
    public init(command: String, variables: [(String, String)]) throws(CaptiveCommandError) {
        self.command = command
        var environment: [String: String] = [:]
        var order: [String] = []
        var p = environ
        while let entry = p.pointee {
            let text = String(cString: entry)
            if let eq = text.firstIndex(of: "=") {
                let name = String(text[..<eq])
                if environment[name] == nil { order.append(name) }
                environment[name] = String(text[text.index(after: eq)...])
            }
            p += 1
        }
        for (name, value) in variables {
            if environment[name] == nil { order.append(name) }
            environment[name] = value
        }
        var envp: [UnsafeMutablePointer<CChar>?] = order.map { strdup("\($0)=\(environment[$0]!)") }
        envp.append(nil)
        defer { for e in envp { free(e) } }
        var child: Int32 = 0
        let r = cservice_spawn_shell(command, envp, &child)
        guard r == 0 else { throw .spawn(command: command, error: SystemErrno(negated: r)) }
        pid = child
    }

    /// Blocks until the command ends (call once, from a thread that may block).
    public func wait() throws(CaptiveCommandError) -> CaptiveExit {
        var code: Int32 = 0
        var sig: Int32 = 0
        let r = cservice_wait_child(pid, &code, &sig)
        guard r == 0 else { throw .wait(pid: pid, error: SystemErrno(negated: r)) }
        return CaptiveExit(status: code, signal: sig == 0 ? nil : sig)
    }

    /// Passes a signal on to the command (the server's SIGINT/SIGTERM, so the
    /// command decides when the server stops). Errors (it has just exited) are ignored.
    public func forward(signal: Int32) {
        _ = cservice_signal_child(pid, signal)
    }
}
