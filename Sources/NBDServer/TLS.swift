import Foundation
import NBDProtocol
import NIOSSL

/// TLS for NBD (proto.md, "TLS support"): `NBD_OPT_STARTTLS` upgrades the
/// connection in the middle of the handshake, with X.509 certificates or
/// pre-shared keys, in the option names and file layout of nbdkit
/// (`--tls`, `--tls-certificates`, `--tls-verify-peer`, `--tls-psk`).
public struct TLSSettings: Sendable, Hashable {
    /// proto.md, "Server-side requirements".
    public enum Mode: String, Sendable, Hashable, CaseIterable {
        /// NOTLS: `NBD_OPT_STARTTLS` is refused with `NBD_REP_ERR_POLICY`.
        case off
        /// SELECTIVETLS with no TLS-only export: plain and TLS clients are both served.
        case on
        /// FORCEDTLS: nothing but `NBD_OPT_STARTTLS` and `NBD_OPT_ABORT` before TLS.
        case require

        var handshakeMode: NBDServerHandshake.TLSMode {
            switch self {
            case .off: .off
            case .on: .optional
            case .require: .required
            }
        }
    }

    /// How the server proves itself, and which clients it lets in.
    public enum Credentials: Sendable, Hashable {
        /// `server-cert.pem` and `server-key.pem` in `directory` (nbdkit's layout);
        /// with `verifyPeer`, clients must present a certificate signed by the
        /// directory's `ca-cert.pem`.
        case certificates(directory: String, verifyPeer: Bool)
        /// A psktool(1) file: `username:hexkey` lines. TLS 1.2 PSK cipher suites
        /// only (BoringSSL has no TLS 1.3 PSK for applications).
        case psk(file: String)
    }

    public var mode: Mode
    public var credentials: Credentials

    public init(mode: Mode, credentials: Credentials) {
        self.mode = mode
        self.credentials = credentials
    }

    /// The certificate file names nbdkit and qemu-nbd look for.
    public static let caCertificateFile = "ca-cert.pem"
    public static let serverCertificateFile = "server-cert.pem"
    public static let serverKeyFile = "server-key.pem"

    /// Where certificates are looked for without `--tls-certificates`, as nbdkit
    /// does with its own name: `/etc/pki/nvme-nbd` for root, `$HOME/.pki/nvme-nbd`
    /// for anyone else.
    public static func defaultCertificateDirectory(
        isRoot: Bool = getuid() == 0,
        home: String? = ProcessInfo.processInfo.environment["HOME"]
    ) -> String {
        if isRoot { return "/etc/pki/nvme-nbd" }
        return ((home ?? NSHomeDirectory()) as NSString).appendingPathComponent(".pki/nvme-nbd")
    }

    /// TLS 1.2 PSK cipher suites BoringSSL offers (ECDHE first, for forward secrecy).
    static let pskCipherSuites = [
        "ECDHE-PSK-CHACHA20-POLY1305", "ECDHE-PSK-AES128-CBC-SHA", "ECDHE-PSK-AES256-CBC-SHA",
        "PSK-AES128-CBC-SHA", "PSK-AES256-CBC-SHA",
    ].joined(separator: ":")

    /// Loads the credentials and builds the TLS context every connection's
    /// `NIOSSLServerHandler` shares; throws naming the file that is missing or bad.
    func makeContext() throws(TLSSetupError) -> NIOSSLContext {
        var configuration: TLSConfiguration
        switch credentials {
        case .certificates(let directory, let verifyPeer):
            let certPath = (directory as NSString).appendingPathComponent(Self.serverCertificateFile)
            let keyPath = (directory as NSString).appendingPathComponent(Self.serverKeyFile)
            let caPath = (directory as NSString).appendingPathComponent(Self.caCertificateFile)
            var needed = [(certPath, "the server certificate"), (keyPath, "the server's private key")]
            if verifyPeer {
                needed.append((caPath, "the CA certificate client certificates must be signed by (--tls-verify-peer)"))
            }
            for (path, role) in needed where !FileManager.default.isReadableFile(atPath: path) {
                throw .missingFile(path: path, role: role)
            }
            let chain: [NIOSSLCertificate]
            let key: NIOSSLPrivateKey
            do {
                chain = try NIOSSLCertificate.fromPEMFile(certPath)
            } catch {
                throw .invalidFile(path: certPath, reason: "\(error)")
            }
            guard !chain.isEmpty else { throw .invalidFile(path: certPath, reason: "no PEM certificate in it") }
            do {
                key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
            } catch {
                throw .invalidFile(path: keyPath, reason: "\(error)")
            }
            configuration = .makeServerConfiguration(
                certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
            if verifyPeer {
                let roots: [NIOSSLCertificate]
                do {
                    roots = try NIOSSLCertificate.fromPEMFile(caPath)
                } catch {
                    throw .invalidFile(path: caPath, reason: "\(error)")
                }
                guard !roots.isEmpty else { throw .invalidFile(path: caPath, reason: "no PEM certificate in it") }
                // Verify the chain, not a host name: clients have none to check.
                configuration.certificateVerification = .noHostnameVerification
                configuration.trustRoots = .certificates(roots)
                configuration.sendCANameList = true
            }
        case .psk(let file):
            let keys = try PSKFile.load(file)
            configuration = .makePreSharedKeyConfiguration()
            configuration.maximumTLSVersion = .tlsv12
            configuration.cipherSuites = Self.pskCipherSuites
            configuration.pskServerProvider = { context in
                guard let key = keys[context.clientIdentity] else {
                    throw TLSSetupError.unknownPSKIdentity(context.clientIdentity)
                }
                return PSKServerIdentityResponse(key: NIOSSLSecureBytes(key))
            }
        }
        // proto.md, "TLS versions": "MUST support TLS version 1.2 … MAY support
        // older versions but SHOULD NOT do so by default".
        configuration.minimumTLSVersion = .tlsv12
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw .libraryRefused(reason: "\(error)")
        }
    }
}

/// psktool(1)'s key file, as nbdkit's `--tls-psk` reads it: one `username:hexkey`
/// per line; blank lines are skipped.
public enum PSKFile {
    public static func load(_ path: String) throws(TLSSetupError) -> [String: [UInt8]] {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .unreadablePSKFile(path: path, reason: "\(error)")
        }
        return try parse(text, path: path)
    }

    public static func parse(_ text: String, path: String) throws(TLSSetupError) -> [String: [UInt8]] {
        var keys: [String: [UInt8]] = [:]
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty { continue }
            let number = index + 1
            guard let colon = line.firstIndex(of: ":") else {
                throw .invalidPSKLine(path: path, line: number, reason: "expected username:hexkey")
            }
            let user = String(line[..<colon])
            let hex = line[line.index(after: colon)...]
            guard !user.isEmpty else { throw .invalidPSKLine(path: path, line: number, reason: "empty username") }
            guard !hex.isEmpty, hex.count % 2 == 0 else {
                throw .invalidPSKLine(path: path, line: number, reason: "the key must be an even number of hex digits")
            }
            var key: [UInt8] = []
            key.reserveCapacity(hex.count / 2)
            var i = hex.startIndex
            while i < hex.endIndex {
                let j = hex.index(i, offsetBy: 2)
                guard let byte = UInt8(hex[i..<j], radix: 16) else {
                    throw .invalidPSKLine(path: path, line: number, reason: "'\(hex[i..<j])' is not a hex byte")
                }
                key.append(byte)
                i = j
            }
            guard keys[user] == nil else {
                throw .invalidPSKLine(path: path, line: number, reason: "username '\(user)' given twice")
            }
            keys[user] = key
        }
        guard !keys.isEmpty else { throw .emptyPSKFile(path: path) }
        return keys
    }
}

/// TLS that cannot be set up, naming the file and what was wrong with it.
public enum TLSSetupError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A file TLS needs is absent or unreadable.
    case missingFile(path: String, role: String)
    /// The `--tls-psk` file cannot be read.
    case unreadablePSKFile(path: String, reason: String)
    /// A certificate or key file that does not parse.
    case invalidFile(path: String, reason: String)
    /// A line of the `--tls-psk` file that is not `username:hexkey`.
    case invalidPSKLine(path: String, line: Int, reason: String)
    /// A `--tls-psk` file with no key.
    case emptyPSKFile(path: String)
    /// BoringSSL refused the configuration (a key that does not match the certificate, say).
    case libraryRefused(reason: String)
    /// A PSK client named a username the file does not have (refuses that handshake).
    case unknownPSKIdentity(String)

    public var description: String {
        switch self {
        case .missingFile(let path, let role):
            return "TLS: cannot read \(path) (\(role)); give --tls-certificates DIR holding "
                + "\(TLSSettings.caCertificateFile), \(TLSSettings.serverCertificateFile) and \(TLSSettings.serverKeyFile)"
        case .unreadablePSKFile(let path, let reason):
            return "TLS: cannot read --tls-psk \(path): \(reason)"
        case .invalidFile(let path, let reason):
            return "TLS: \(path) is not a usable PEM file: \(reason)"
        case .invalidPSKLine(let path, let line, let reason):
            return "TLS: --tls-psk \(path), line \(line): \(reason)"
        case .emptyPSKFile(let path):
            return "TLS: --tls-psk \(path) holds no username:hexkey line"
        case .libraryRefused(let reason):
            return "TLS: the credentials were refused: \(reason)"
        case .unknownPSKIdentity(let user):
            return "TLS: unknown PSK username '\(user)'"
        }
    }
}
