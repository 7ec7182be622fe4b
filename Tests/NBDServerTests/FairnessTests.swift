import Foundation
import NBDProtocol
import NBDServer
import TestSupport
import Testing

/// Two connections served by one event loop (`queues: 1`: one loop thread and
/// one queue pair for both): a client that keeps 32 large reads in flight must
/// not starve a client that sends one small read at a time, and the pipelining
/// client keeps progressing while the other is served.
@Suite("Fairness between connections on one event loop", .timeLimit(.minutes(10)))
struct FairnessTests {
    static let hogDepth = 32
    static let hogReadBytes: UInt32 = 256 << 10
    static let lightReads = 200

    @Test("a pipelining connection and a one-at-a-time connection both progress", arguments: Transport.allCases)
    func bothConnectionsProgress(transport: Transport) async throws {
        try await checkOnOwnThread { findings in
            try withServer(exports: [ExportSpec(name: "", size: 256 << 20)], queues: 1) { f in
                let hogClient = try f.raw(transport)
                try hogClient.handshake(structured: false)
                let light = try f.raw(transport)
                try light.handshake(structured: false)
                let hogReplies = Shared(0)
                let stop = Shared(false)
                let hog = OwnThread { Self.pipelineReads(hogClient, replies: hogReplies, stop: stop) }
                defer { stop.withLock { $0 = true } }

                findings.check(
                    eventually(seconds: 30) { hogReplies.value >= 2 * Self.hogDepth },
                    "the pipelining client got \(hogReplies.value) replies")
                // Both sides must progress: the one-at-a-time client completes its
                // reads and the pipelining one a further two windows, whichever
                // takes longer, within a generous bound (a starved side never does).
                let hogBefore = hogReplies.value
                let deadline = Date().addingTimeInterval(WaitScale.seconds(60))
                var lightDone = 0
                var failed = false
                while (lightDone < Self.lightReads || hogReplies.value - hogBefore < 2 * Self.hogDepth)
                    && Date() < deadline
                {
                    let offset = UInt64(lightDone % 4096) * 4096 + (128 << 20)
                    let r = try light.roundTrip(
                        NBDRequest(type: .read, cookie: UInt64(lightDone), offset: offset, length: 4096))
                    guard r.error == .success, r.data.count == 4096 else {
                        findings.check(false, "light read \(lightDone): \(r.error), \(r.data.count) bytes")
                        failed = true
                        break
                    }
                    lightDone += 1
                }
                let hogDuring = hogReplies.value - hogBefore
                stop.withLock { $0 = true }
                let outcome = eventually(seconds: 30) { hog.finished != nil } ? hog.finished! : "still running"
                findings.check(
                    failed || lightDone >= Self.lightReads && hogDuring >= 2 * Self.hogDepth,
                    "in 60 s: \(lightDone) one-at-a-time reads, \(hogDuring) pipelined replies")
                findings.check(outcome == nil, "pipelining client: \(outcome ?? "")")
                findings.check(f.statistics().nbd[.errors] == 0, "no request failed")
            }
        }
    }

    /// Keeps `hogDepth` reads of `hogReadBytes` in flight until `stop`, then drains;
    /// nil when every reply was a success.
    static func pipelineReads(_ client: RawClient, replies: Shared<Int>, stop: Shared<Bool>) -> String? {
        var cookie: UInt64 = 0
        func send() throws {
            let offset = (cookie % 512) * UInt64(hogReadBytes)
            try client.sendRequest(NBDRequest(type: .read, cookie: cookie, offset: offset, length: hogReadBytes))
            cookie += 1
        }
        do {
            for _ in 0..<hogDepth { try send() }
            var outstanding = hogDepth
            while outstanding > 0 {
                let r = try client.readReply()
                outstanding -= 1
                guard r.error == .success, r.data.count == Int(hogReadBytes) else {
                    return "read \(r.cookie): \(r.error), \(r.data.count) bytes"
                }
                replies.withLock { $0 += 1 }
                if !stop.value {
                    try send()
                    outstanding += 1
                }
            }
            return nil
        } catch {
            return "\(error)"
        }
    }
}
