/// What went wrong serving or fetching metrics, with the address concerned.
public enum MetricsError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A `--metrics` value that is not `HOST:PORT`.
    case badAddress(String, reason: String)
    /// The endpoint could not bind its address.
    case cannotListen(address: String, reason: String)
    /// The client could not connect or the connection failed mid-request.
    case connectionFailed(address: String, reason: String)
    /// The endpoint answered with a status other than 200.
    case httpStatus(address: String, status: Int)
    /// No complete answer within the time allowed.
    case timedOut(address: String, seconds: Int)

    public var description: String {
        switch self {
        case .badAddress(let text, let reason):
            "--metrics '\(text)': \(reason) (expected HOST:PORT, [V6ADDR]:PORT, :PORT or PORT)"
        case .cannotListen(let address, let reason):
            "cannot serve metrics on \(address): \(reason)"
        case .connectionFailed(let address, let reason):
            "cannot fetch metrics from http://\(address)/metrics: \(reason)"
        case .httpStatus(let address, let status):
            "http://\(address)/metrics answered HTTP \(status)"
        case .timedOut(let address, let seconds):
            "http://\(address)/metrics did not answer within \(seconds) s"
        }
    }
}

/// A metrics endpoint's address: `HOST:PORT`, `[V6ADDR]:PORT`, `:PORT` or
/// `PORT` alone (the last two mean 127.0.0.1; give `0.0.0.0:PORT` to serve
/// every interface).
public struct MetricsAddress: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `host:port`, with IPv6 hosts in brackets.
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    public static func parse(_ text: String) throws(MetricsError) -> MetricsAddress {
        var host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw .badAddress(text, reason: "missing ']'") }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw .badAddress(text, reason: "no port after ']'") }
            portText = rest.dropFirst()
        } else if let colon = text.lastIndex(of: ":") {
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        } else if !text.isEmpty && text.allSatisfy(\.isASCII) && text.allSatisfy(\.isNumber) {
            host = ""
            portText = Substring(text)
        } else {
            throw .badAddress(text, reason: "no port")
        }
        if host.isEmpty { host = "127.0.0.1" }
        guard let port = Int(portText), (0...65535).contains(port) else {
            throw .badAddress(text, reason: "port '\(portText)' is not 0...65535")
        }
        return MetricsAddress(host: String(host), port: port)
    }
}
