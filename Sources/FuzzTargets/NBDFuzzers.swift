import NBDProtocol
import NIOCore

/// Fuzz entry points for the NBD wire format (used by the libFuzzer executables
/// in `Fuzz/` and replayed over the checked-in corpus by `FuzzRegressionTests`).
/// They must never crash, hang or grow without bound, whatever the bytes.
public enum NBDFuzzers {
    /// The server handshake fed the input in chunks whose sizes come from the
    /// input's first byte; then whatever is left goes to the request decoder.
    public static func handshake(_ data: UnsafeRawBufferPointer) {
        guard let first = data.first else { return }
        let chunk = Int(first % 37) + 1
        let exports = [
            NBDExport(name: "", size: 1 << 20, flags: [.hasFlags, .sendFlush, .sendTrim]),
            NBDExport(
                name: "disk", description: "a disk", size: 4096,
                flags: [.hasFlags, .readOnly],
                blockSize: (try? NBDBlockSizeConstraints(minimum: 512, preferred: 4096, maximum: 1 << 20)) ?? .default,
                requiresBlockSizeNegotiation: true),
        ]
        // The first byte also picks the TLS mode; after STARTTLS the rest of the
        // input stands for what TLS decrypts.
        let tls: [NBDServerHandshake.TLSMode] = [.off, .optional, .required]
        var machine = NBDServerHandshake(
            configuration: .init(exports: exports, maximumOptionLength: 1024, tls: tls[Int(first / 37) % 3]))
        var buffer = ByteBuffer()
        var offset = 1
        var actions = 0
        while offset < data.count {
            let n = min(chunk, data.count - offset)
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: data[offset..<(offset + n)]))
            offset += n
            for action in machine.process(&buffer) {
                actions += 1
                switch action {
                case .send(let b): precondition(b.readableBytes > 0 && b.readableBytes < 1 << 20)
                case .close: return
                case .startTLS:
                    precondition(!machine.isTLSActive && machine.phase == .awaitingTLS)
                    machine.tlsStarted()
                case .enterTransmission(let selection):
                    precondition(exports.contains { $0.name == selection.export.name })
                    var rest = buffer
                    var decoder = NBDRequestDecoder(maximumPayload: 1 << 16)
                    rest.writeBytes(UnsafeRawBufferPointer(rebasing: data[offset...]))
                    while (try? decoder.decode(buffer: &rest)).flatMap({ $0 }) != nil {}
                    return
                }
            }
            // Skipped data must not be buffered: what stays is at most one option's worth.
            precondition(buffer.readableBytes <= 1024 + 16 + chunk, "handshake buffered \(buffer.readableBytes) bytes")
        }
        _ = actions
    }

    /// The request decoder fed the input in chunks; every decoded request is
    /// re-encoded and must decode to itself.
    public static func requests(_ data: UnsafeRawBufferPointer) {
        guard let first = data.first else { return }
        let chunk = Int(first % 61) + 1
        var decoder = NBDRequestDecoder(maximumPayload: 4096)
        var buffer = ByteBuffer()
        var offset = 1
        while offset < data.count {
            let n = min(chunk, data.count - offset)
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: data[offset..<(offset + n)]))
            offset += n
            while true {
                let message: NBDRequestDecoder.Message?
                do { message = try decoder.decode(buffer: &buffer) } catch { return }
                guard let message else { break }
                switch message {
                case .request(let r, let payload):
                    precondition((payload?.readableBytes ?? 0) == (r.type == .write ? Int(r.length) : 0))
                    var again = ByteBuffer()
                    again.writeNBDRequest(r)
                    let back = try? again.readNBDRequest()
                    precondition(back == r, "request round trip")
                case .oversizedPayload(let r):
                    precondition(Int(r.length) > 4096)
                case .unexpectedPayloadLengthFlag:
                    break
                }
            }
            buffer.discardReadBytes()
            precondition(buffer.readableBytes <= 4096 + 28 + chunk)
        }
    }
}
