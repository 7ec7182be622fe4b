import Foundation
import NBDProtocol
import NBDServer
import NIOCore
import TestSupport
import Testing

/// The server-wide memory budget (``ConnectionLimits/memoryBudgetBytes``) under
/// clients that pipeline large reads and never read the replies.
@Suite("server memory budget", .serialized)
struct MemoryBudgetTests {
    /// The default budget: the test is the measurement (nbdkit held
    /// 3.6 GiB there, qemu-nbd 8.2 GiB, this server 2.1 GiB before the budget).
    static let budget = ConnectionLimits().memoryBudgetBytes
    static let readLength: UInt32 = 32 << 20

    @Test(
        "16 clients pipelining 200 reads of 32 MiB without reading: memory stays bounded, a fair client progresses, nothing fails"
    )
    func unreadReplies() async throws {
        #expect(Self.budget == 1 << 30)
        // Minutes of blocking sockets: on a thread of its own, not the cooperative pool.
        let findings = try await onOwnThread { try Self.run() }
        findings.record()
    }

    /// The measurement; returns what did not hold.
    static func run() throws -> Findings {
        var findings = Findings()
        try withServer { f in
            // The 64 MiB the greedy clients read is written first: reads of written
            // memory are copies (unwritten memory is cleared byte by byte in debug builds).
            let writer = try f.raw(.unix)
            try writer.handshake()
            for k in 0..<2 {
                let w = try writer.roundTrip(
                    NBDRequest(
                        type: .write, cookie: UInt64(k), offset: UInt64(k) << 25,
                        length: Self.readLength),
                    payload: [UInt8](repeating: UInt8(k + 1), count: Int(Self.readLength)))
                findings.check(w.error == .success)
            }
            // The greedy clients: handshake, then 200 reads of 32 MiB each, never read.
            var greedy: [RawClient] = []
            for i in 0..<16 {
                let c = try f.raw(i % 2 == 0 ? .tcp : .unix)
                try c.handshake()
                var b = ByteBuffer()
                for k in 0..<200 {
                    c.encode(
                        NBDRequest(
                            type: .read, cookie: UInt64(k), offset: UInt64(k % 2) * UInt64(Self.readLength),
                            length: Self.readLength), into: &b)
                }
                try c.send(b)
                greedy.append(c)
            }
            // Wait until the budget is taken (the greedy clients' replies pile up).
            findings.check(
                eventually(seconds: 30) { f.server.memoryBudgetUsage.held >= Self.budget },
                "the greedy clients fill the budget: \(f.server.memoryBudgetUsage)")

            // A fair client beside them: writes, reads back, verifies, round after round.
            let seed = TestSeed.fixed(20_261_202)
            var rng = seed.generator()
            let fair = try f.raw(.tcp)
            // Its requests may wait behind the greedy reads' NVMe commands in the queue.
            fair.timeoutMilliseconds = Int32(WaitScale.seconds(60) * 1000)
            try fair.handshake()
            for round in 0..<40 {
                let length = [4096, 65536, 1 << 20][round % 3]
                let offset = UInt64(round) * (1 << 20)
                let data = randomBytes(length, using: &rng)
                let w = try fair.roundTrip(
                    NBDRequest(
                        type: .write, cookie: UInt64(1000 + round), offset: offset,
                        length: UInt32(length)), payload: data)
                findings.check(w.error == .success, "round \(round) write, \(seed)")
                let r = try fair.roundTrip(
                    NBDRequest(
                        type: .read, cookie: UInt64(2000 + round), offset: offset,
                        length: UInt32(length)))
                findings.check(r.error == .success, "round \(round) read, \(seed)")
                let got =
                    r.chunks.isEmpty
                    ? r.data
                    : r.chunks.flatMap { chunk -> [UInt8] in
                        if case .offsetData(_, var d) = chunk.payload {
                            return d.readBytes(length: d.readableBytes) ?? []
                        }
                        return []
                    }
                findings.check(got == data, "round \(round) read back what it wrote, \(seed)")
            }
            let usage = f.server.memoryBudgetUsage
            // The capacity, plus the headroom connections that hold nothing may use.
            findings.check(usage.peak <= Self.budget + Self.budget / 2, "peak \(usage.peak >> 20) MiB")
            findings.check(f.errorCount() == 0, "no request failed")

            // The greedy clients read one reply each: theirs complete, the budget turns over.
            for c in greedy {
                let reply = try c.readReply()
                findings.check(reply.error == .success)
            }
            greedy.removeAll()
            // Disconnected, they give everything back.
            findings.check(
                eventually(seconds: 30) { f.server.memoryBudgetUsage.held == 0 },
                "held after the greedy clients left: \(f.server.memoryBudgetUsage.held)")
        }
        return findings
    }
}
