import NBDProtocol
import NIOCore
import TestSupport

/// Builds a buffer from hex text; whitespace and `_` are ignored.
func hex(_ text: String) -> ByteBuffer {
    let digits = text.filter { !$0.isWhitespace && $0 != "_" }
    precondition(digits.count % 2 == 0, "odd number of hex digits")
    var bytes: [UInt8] = []
    var index = digits.startIndex
    while index < digits.endIndex {
        let next = digits.index(index, offsetBy: 2)
        bytes.append(UInt8(digits[index..<next], radix: 16)!)
        index = next
    }
    return ByteBuffer(bytes: bytes)
}

/// Hex text of the readable bytes, for readable failure messages.
func hexString(_ buffer: ByteBuffer) -> String {
    buffer.readableBytesView.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
}

extension ByteBuffer {
    /// Random bytes of the given length.
    static func random(count: Int, using generator: inout SplitMix64) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(count)
        for _ in 0..<count { buffer.writeInteger(UInt8.random(in: .min ... .max, using: &generator)) }
        return buffer
    }
}

/// How a byte stream is cut into chunks.
enum Chunking: Hashable, Sendable, CustomStringConvertible {
    case whole
    case byteByByte
    /// Random sizes up to `maximum`, from ``TestSeed/fixed(_:)`` of `seed`.
    case random(seed: UInt64, maximum: Int)

    func split(_ buffer: ByteBuffer) -> [ByteBuffer] {
        var buffer = buffer
        var chunks: [ByteBuffer] = []
        switch self {
        case .whole:
            return [buffer]
        case .byteByByte:
            while let byte = buffer.readSlice(length: 1) { chunks.append(byte) }
        case .random(let seed, let maximum):
            var generator = TestSeed.fixed(seed).generator()
            while buffer.readableBytes > 0 {
                let size = Int.random(in: 1...min(maximum, buffer.readableBytes), using: &generator)
                chunks.append(buffer.readSlice(length: size)!)
            }
        }
        return chunks
    }

    var description: String {
        switch self {
        case .whole: "whole"
        case .byteByByte: "byte by byte"
        case .random(let seed, let maximum): "random(\(TestSeed.fixed(seed)), max: \(maximum))"
        }
    }

    static let all: [Chunking] = [
        .whole, .byteByByte, .random(seed: 1, maximum: 7), .random(seed: 2, maximum: 40),
        .random(seed: 3, maximum: 300),
    ]
}

/// Feeds `input` to a handshake in the given chunking, the way a channel
/// handler would: appending to one cumulation buffer and calling `process`.
/// Returns every action and the bytes the handshake left unconsumed.
func drive(
    _ handshake: inout NBDServerHandshake, _ input: ByteBuffer, chunking: Chunking = .whole
) -> (actions: [NBDServerHandshake.Action], leftover: ByteBuffer) {
    var cumulation = ByteBuffer()
    var actions: [NBDServerHandshake.Action] = []
    for var chunk in chunking.split(input) {
        cumulation.writeBuffer(&chunk)
        actions += handshake.process(&cumulation)
        cumulation.discardReadBytes()
    }
    return (actions, cumulation)
}

/// Splits server bytes into option replies (fails the caller via `nil` on garbage).
func optionReplies(_ bytes: ByteBuffer) throws -> [NBDOptionReply] {
    var bytes = bytes
    var replies: [NBDOptionReply] = []
    while let reply = try bytes.readNBDOptionReply() { replies.append(reply) }
    guard bytes.readableBytes == 0 else {
        throw TestFailure("trailing bytes after option replies: \(hexString(bytes))")
    }
    return replies
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Client-side byte builder for handshake tests.
struct ClientBytes {
    var buffer = ByteBuffer()

    init(flags: NBDClientFlags? = [.fixedNewstyle, .noZeroes]) {
        if let flags { self.buffer.writeNBDClientFlags(flags) }
    }

    @discardableResult
    mutating func option(_ request: NBDOptionRequest) -> Self {
        self.buffer.writeNBDOption(request)
        return self
    }

    func adding(_ request: NBDOptionRequest) -> Self {
        var copy = self
        copy.option(request)
        return copy
    }
}
