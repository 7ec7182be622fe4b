import ArgumentParser
import Foundation
import NBDServer

/// The variables nbdkit-captive(1) gives a `--run` command. nbdkit sets them as
/// shell variables; nvme-nbd exports them, so `$uri` works in the command line as
/// with nbdkit and programs it starts (fio's `--uri`) see them too.
enum CaptiveEnvironment {
    /// The variables' names, in the order ``variables(endpoints:exportName:)`` gives them.
    static let names = ["uri", "nbd", "port", "unixsocket", "exportname"]

    /// `--run`'s help, naming the variables.
    static var help: ArgumentHelp {
        ArgumentHelp(
            "Captive mode (nbdkit-captive(1)): once serving, run CMD with /bin/sh -c, with \(names.map { "$" + $0 }.joined(separator: ", ")) in its environment; stop serving when it exits and exit with its status.",
            valueName: "cmd")
    }

    static func variables(endpoints: [ListenerEndpoint], exportName: String) -> [(String, String)] {
        let path = exportName.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? exportName
        var uri = ""
        var port = ""
        var unixSocket = ""
        for e in endpoints {
            switch e {
            case .unix(let p) where unixSocket.isEmpty: unixSocket = p
            case .tcp(let host, let p) where port.isEmpty:
                port = "\(p)"
                // A wildcard address is reached through localhost (nbdkit's URI form).
                let shown = host == "0.0.0.0" || host == "::" ? "localhost" : (host.contains(":") ? "[\(host)]" : host)
                if unixSocket.isEmpty && uri.isEmpty { uri = "nbd://\(shown):\(p)/\(path)" }
            default: break
            }
        }
        if !unixSocket.isEmpty {
            var allowed = CharacterSet.urlQueryAllowed
            allowed.remove(charactersIn: "&+")
            uri =
                "nbd+unix:///\(path)?socket=\(unixSocket.addingPercentEncoding(withAllowedCharacters: allowed) ?? unixSocket)"
        }
        if uri.hasSuffix("/") { uri.removeLast() }
        return Array(zip(names, [uri, uri, port, unixSocket, exportName]))
    }
}
