import Foundation
import FuzzTargets
import TestSupport
import Testing

/// Replays every input of the checked-in fuzz corpus (`Fuzz/Corpus/<target>/`,
/// seeds plus every crash the fuzzers ever found) through the fuzz entry points,
/// and a few thousand deterministic pseudo-random inputs on top.
@Suite(.timeLimit(.minutes(30))) struct CorpusReplayTests {
    static let corpusRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/Corpus")

    static func inputs(_ target: String) -> [URL] {
        let dir = corpusRoot.appendingPathComponent(target)
        let files = (try? FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)) ?? []
        return files.filter { !$0.lastPathComponent.hasPrefix(".") }.sorted { $0.path < $1.path }
    }

    static func replay(_ target: String, _ body: (UnsafeRawBufferPointer) -> Void) throws -> Int {
        let files = inputs(target)
        for f in files {
            let data = try Data(contentsOf: f)
            data.withUnsafeBytes { body($0) }
        }
        return files.count
    }

    /// `count` random inputs from ``TestSeed/fixed(_:)`` of `seed`. A fuzz target
    /// fails by trapping, which ends the process before any message, so the seed is
    /// written to standard error first.
    static func random(count: Int, seed fixed: UInt64, maxLength: Int, _ body: (UnsafeRawBufferPointer) -> Void) {
        let seed = TestSeed.fixed(fixed)
        FileHandle.standardError.write(Data("CorpusReplayTests: \(count) random inputs, \(seed)\n".utf8))
        var rng = seed.generator()
        func next() -> UInt64 { rng.next() }
        for _ in 0..<count {
            let n = Int(next() % UInt64(maxLength))
            let bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: next()) }
            bytes.withUnsafeBytes { body($0) }
        }
    }

    /// One fuzz entry point, its corpus folder and the random inputs run through it.
    struct Target: Sendable, CustomTestStringConvertible {
        var corpus: String
        var randomInputs: Int
        var seed: UInt64
        var maxLength: Int
        var entry: @Sendable (UnsafeRawBufferPointer) -> Void
        var testDescription: String { corpus }

        static let all = [
            Target(corpus: "handshake", randomInputs: 3000, seed: 1, maxLength: 600) { NBDFuzzers.handshake($0) },
            Target(corpus: "requests", randomInputs: 3000, seed: 2, maxLength: 600) { NBDFuzzers.requests($0) },
            Target(corpus: "controller", randomInputs: 300, seed: 3, maxLength: 2000) { ControllerFuzzer.run($0) },
        ]
    }

    /// Thousands of inputs through synchronous code: on a thread of its own, so the
    /// cooperative pool stays free for the async tests beside it.
    @Test(arguments: Target.all)
    func corpus(_ target: Target) async throws {
        let replayed = try await onOwnThread {
            let n = try Self.replay(target.corpus, target.entry)
            Self.random(count: target.randomInputs, seed: target.seed, maxLength: target.maxLength, target.entry)
            return n
        }
        #expect(replayed > 0, "the \(target.corpus) corpus is missing")
    }
}
