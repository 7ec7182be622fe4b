import Foundation

/// The seed of a randomised test, and how to replay it.
///
/// Every test that makes random choices takes its generator from a `TestSeed`
/// and puts the seed in its failure messages (`#expect(ok, "\(seed)")`).
///
/// - ``fixed(_:)``: the test's own seed, the same every run, unless
///   `NVME_NBD_TEST_SEED` is set: then a seed derived from both.
/// - ``fresh(_:)``: a different seed every run (derived from a run seed taken
///   from the clock once per process), or, when `NVME_NBD_TEST_SEED` is set, the
///   seed derived from it.
///
/// A failure prints `seed S` (a fixed seed: rerun as is) or
/// `seed S (NVME_NBD_TEST_SEED=R)`: rerun the test with that variable set to
/// replay the same choices. Setting the variable to new values explores other
/// sequences in every randomised test at once. It takes a decimal or `0x`
/// hexadecimal 64-bit value.
public struct TestSeed: Sendable, Hashable, CustomStringConvertible {
    public static let variable = "NVME_NBD_TEST_SEED"

    /// `NVME_NBD_TEST_SEED`, when set.
    public static let environment: UInt64? = {
        guard let raw = getenv(variable) else { return nil }
        let text = String(cString: raw).trimmingCharacters(in: .whitespaces)
        let value =
            text.hasPrefix("0x") || text.hasPrefix("0X")
            ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
        guard let value else { fatalError("\(variable)=\(text) is not a decimal or 0x-hexadecimal UInt64") }
        return value
    }()

    /// The run seed ``fresh(_:)`` seeds derive from: `NVME_NBD_TEST_SEED`, else
    /// one drawn from the clock when first used.
    public static let run: UInt64 =
        environment
        ?? {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            let nanoseconds =
                UInt64(truncatingIfNeeded: now.tv_sec) &* 1_000_000_000
                &+ UInt64(truncatingIfNeeded: now.tv_nsec)
            var mixer = SplitMix64(seed: nanoseconds ^ UInt64(truncatingIfNeeded: getpid()) << 32)
            return mixer.next()
        }()

    /// The seed the generators start from.
    public let value: UInt64
    /// The `NVME_NBD_TEST_SEED` that reproduces ``value``; nil for a fixed seed
    /// in a run without the variable.
    public let runSeed: UInt64?

    private init(value: UInt64, runSeed: UInt64?) {
        self.value = value
        self.runSeed = runSeed
    }

    /// A test's fixed seed: `seed` itself, or derived from it and
    /// `NVME_NBD_TEST_SEED` when that is set.
    public static func fixed(_ seed: UInt64) -> TestSeed {
        guard let run = environment else { return TestSeed(value: seed, runSeed: nil) }
        return TestSeed(value: derive(run, seed), runSeed: run)
    }

    /// A seed that changes from run to run, derived from ``run`` and `stream`
    /// (distinct streams for distinct uses within one run).
    public static func fresh(_ stream: UInt64 = 0) -> TestSeed {
        TestSeed(value: derive(run, stream), runSeed: run)
    }

    /// ``fresh(_:)`` with the stream named by `name` (a case's description, so
    /// that the cases of a parameterised test draw different seeds).
    public static func fresh(_ name: String) -> TestSeed {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325  // FNV-1a: stable across processes, unlike Hasher
        for byte in name.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
        return fresh(hash)
    }

    /// A generator for stream `stream` of this seed (threads or workers of one
    /// test take one each): seeded with `value + stream`.
    public func generator(stream: UInt64 = 0) -> SplitMix64 { SplitMix64(seed: value &+ stream) }

    public var description: String {
        guard let runSeed else { return "seed \(value)" }
        return "seed \(value) (\(Self.variable)=\(runSeed))"
    }

    private static func derive(_ run: UInt64, _ seed: UInt64) -> UInt64 {
        var mixer = SplitMix64(seed: run ^ (seed &* 0xD1B5_4A32_D192_ED03))
        return mixer.next()
    }
}
