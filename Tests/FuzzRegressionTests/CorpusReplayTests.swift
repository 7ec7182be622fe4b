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

    @Test func handshakeCorpus() throws {
        let n = try Self.replay("handshake", NBDFuzzers.handshake)
        #expect(n > 0, "the handshake corpus is missing")
        Self.random(count: 3000, seed: 1, maxLength: 600, NBDFuzzers.handshake)
    }

    @Test func requestCorpus() throws {
        let n = try Self.replay("requests", NBDFuzzers.requests)
        #expect(n > 0, "the request corpus is missing")
        Self.random(count: 3000, seed: 2, maxLength: 600, NBDFuzzers.requests)
    }

    @Test func controllerCorpus() throws {
        let n = try Self.replay("controller", ControllerFuzzer.run)
        #expect(n > 0, "the controller corpus is missing")
        Self.random(count: 300, seed: 3, maxLength: 2000, ControllerFuzzer.run)
    }
}
