import Atomics

/// The names of one layer's counters: the single list every use derives from —
/// the atomic block (``CounterBlock``), its copy (``CounterValues``), the JSON
/// `--stats-json` writes and the metrics. Raw values number the cases from 0 in
/// declaration order (the default for an `Int` enum); the JSON name of a
/// counter is its case name.
public protocol CounterKey: RawRepresentable, CaseIterable, Hashable, Sendable
where RawValue == Int, AllCases: RandomAccessCollection {}

extension CounterKey {
    /// The counter's name in JSON and metrics: the case name (so a key type must
    /// not be `CustomStringConvertible`).
    public var name: String { String(describing: self) }
}

/// One atomic 64-bit word per key of `Key`, readable from any thread while
/// others count. Increments are relaxed: a reader never sees a torn value, and
/// counters are not used to order anything else.
///
/// Invariant (the one unsafe part): `words` points at `Key.allCases.count`
/// initialised atomic words allocated in `init` and freed in `deinit`; every
/// index used is a key's raw value, checked in `init` to lie in `0..<count`.
public final class CounterBlock<Key: CounterKey>: @unchecked Sendable {
    private let words: UnsafeMutablePointer<UInt64.AtomicRepresentation>
    private let count: Int

    public init() {
        count = Key.allCases.count
        for (i, key) in Key.allCases.enumerated() {
            precondition(key.rawValue == i, "counter keys must be numbered 0..<count in order")
        }
        words = .allocate(capacity: max(count, 1))
        words.initialize(repeating: UInt64.AtomicRepresentation(0), count: max(count, 1))
    }

    deinit {
        words.deinitialize(count: max(count, 1))
        words.deallocate()
    }

    @inline(__always)
    private func word(_ key: Key) -> UnsafeAtomic<UInt64> { UnsafeAtomic(at: words + key.rawValue) }

    /// Adds `n` (counters and gauges).
    @inline(__always)
    public func add(_ key: Key, _ n: UInt64 = 1) {
        word(key).wrappingIncrement(by: n, ordering: .relaxed)
    }

    /// Takes `n` away (gauges such as connections currently open).
    @inline(__always)
    public func subtract(_ key: Key, _ n: UInt64 = 1) {
        word(key).wrappingDecrement(by: n, ordering: .relaxed)
    }

    /// Raises a high-water mark to `value` (never lowers it).
    @inline(__always)
    public func raise(_ key: Key, to value: UInt64) {
        let w = word(key)
        var current = w.load(ordering: .relaxed)
        while current < value {
            let (exchanged, original) = w.weakCompareExchange(expected: current, desired: value, ordering: .relaxed)
            if exchanged { return }
            current = original
        }
    }

    /// The current value of one counter.
    @inline(__always)
    public func load(_ key: Key) -> UInt64 { word(key).load(ordering: .relaxed) }

    /// A copy of every counter, each read atomically.
    public func snapshot() -> CounterValues<Key> {
        CounterValues(Key.allCases.map { load($0) })
    }
}

/// A copy of a ``CounterBlock``: values by key, encoded as a JSON object with
/// one field per key (its case name).
public struct CounterValues<Key: CounterKey>: Hashable, Sendable, Codable {
    private var values: [UInt64]

    public init() { values = Array(repeating: 0, count: Key.allCases.count) }

    init(_ values: [UInt64]) { self.values = values }

    public subscript(key: Key) -> UInt64 {
        get { values[key.rawValue] }
        set { values[key.rawValue] = newValue }
    }

    /// Every key with its value, in declaration order.
    public var all: [(key: Key, value: UInt64)] { Key.allCases.map { ($0, values[$0.rawValue]) } }

    /// The sum, key by key (e.g. over several queue pairs). Wraps as the counters do.
    public static func + (a: Self, b: Self) -> Self { Self(zip(a.values, b.values).map { $0 &+ $1 }) }

    /// The difference, key by key: what was counted between snapshot `b` and a later
    /// snapshot `a`. Wraps as the counters do, so it is right across a wrap too.
    public static func - (a: Self, b: Self) -> Self { Self(zip(a.values, b.values).map { $0 &- $1 }) }

    private struct Name: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Name.self)
        for key in Key.allCases { try c.encode(values[key.rawValue], forKey: Name(stringValue: key.name)) }
    }

    /// Fields missing from the JSON read as 0 (an older writer).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Name.self)
        values = try Key.allCases.map { try c.decodeIfPresent(UInt64.self, forKey: Name(stringValue: $0.name)) ?? 0 }
    }
}

extension CounterValues: CustomStringConvertible {
    /// `name: value` for every key, in declaration order.
    public var description: String { all.map { "\($0.key.name): \($0.value)" }.joined(separator: ", ") }
}
