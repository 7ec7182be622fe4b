import Synchronization

#if canImport(Glibc)
import ConcurrencyHelpers
import DMA
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Wraps a backend and makes chosen operations fail with a chosen `errno`, for tests
/// of the error paths (an EIO on a range must come back as the NVMe status the
/// controller maps it to — e.g. Unrecovered Read Error, Write Fault — and as the NBD
/// errno the server maps that to).
///
/// A ``Rule`` names the operations it applies to, an optional byte range, the errno,
/// and optionally how many times it fires before it stops. An operation is failed by
/// the first rule (in the order they were added) that
/// - lists its kind,
/// - has no range, or a range overlapping the operation's `[offset, offset+length)`
///   (``Operations/flush`` covers the whole namespace; a zero-length operation
///   overlaps no range, only rules without one),
/// - has failures left.
///
/// A rule may also *hold* operations instead of failing them: a held operation
/// waits until the rule's ``Gate`` opens and then runs normally. Run on worker
/// threads (``StorageIO/threads(workers:)``), that makes one command slow while
/// others finish, deterministically (tests of out-of-order completion).
///
/// Faults are injected only into requests the wrapped backend would otherwise
/// execute: out-of-range requests still throw ``BackendError/Kind/outOfRange`` and
/// writes to a read-only backend ``BackendError/Kind/readOnly``. A failed operation
/// does not reach the wrapped backend at all, so its data is unchanged.
///
/// Rules may be added and removed from any thread while I/O runs; one `Mutex` guards
/// them and the counters.
public final class FaultInjectingBackend: BlockBackend {
    /// One kind of backend operation. The case name is the operation's name: the
    /// `operation` of a ``BackendError`` and a word of ``Operations/description``.
    public enum Operation: UInt8, CaseIterable, Sendable {
        case read, write, flush, deallocate, writeZeroes, allocationMap
    }

    /// Kinds of backend operation a rule applies to: bit `n` is the ``Operation``
    /// with raw value `n`.
    public struct Operations: OptionSet, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// The set holding `operation` alone.
        public init(_ operation: Operation) { self.init(rawValue: 1 << operation.rawValue) }

        public static let read = Operations(.read)
        public static let write = Operations(.write)
        public static let flush = Operations(.flush)
        public static let deallocate = Operations(.deallocate)
        public static let writeZeroes = Operations(.writeZeroes)
        public static let allocationMap = Operations(.allocationMap)
        /// Every operation that changes data: write, deallocate, writeZeroes.
        public static let mutating: Operations = [.write, .deallocate, .writeZeroes]
        public static let all = Operation.allCases.reduce(into: Operations()) { $0.insert(Operations($1)) }

        /// The operations this set holds, in declaration order.
        public var operations: [Operation] { Operation.allCases.filter { contains(Operations($0)) } }

        /// The name of the one operation this set holds (as ``BackendError`` spells it).
        var name: String {
            let held = operations
            return held.count == 1 ? "\(held[0])" : description
        }

        public var description: String { "[" + operations.map { "\($0)" }.joined(separator: ", ") + "]" }
    }

    /// When and how to fail.
    public struct Rule: Hashable, Sendable {
        public var operations: Operations
        /// The bytes whose access triggers the fault; `nil`: any offset.
        public var range: Range<UInt64>?
        /// The errno thrown, as ``BackendError/Kind/system(errno:)``.
        public var errno: Int32
        /// Fail this many times, then let operations through; `nil`: forever.
        public var failureLimit: Int?
        /// Hold matching operations until this gate opens instead of failing them.
        public var hold: Gate?

        public init(operations: Operations, range: Range<UInt64>? = nil, errno: Int32 = EIO, failureLimit: Int? = nil) {
            self.operations = operations
            self.range = range
            self.errno = errno
            self.failureLimit = failureLimit
        }

        /// Holds matching operations (at most `limit` of them) until `gate` opens;
        /// then they run, or fail with `errno` when it is not 0.
        public init(
            holding operations: Operations, range: Range<UInt64>? = nil, until gate: Gate, limit: Int? = nil,
            thenFailWith errno: Int32 = 0
        ) {
            self.init(operations: operations, range: range, errno: errno, failureLimit: limit)
            hold = gate
        }
    }

    /// Where held operations wait. Opening it releases them and every later one.
    public final class Gate: Hashable, Sendable {
        private let state = Locked((open: false, waiting: 0))
        private let condition = ConditionMutex()

        public init() {}

        /// Operations waiting at the gate now.
        public var waiting: Int { condition.withLock { state.withLock { $0.waiting } } }

        /// Releases every held operation; later ones pass at once.
        public func open() {
            condition.withLock {
                state.withLock { $0.open = true }
                condition.broadcast()
            }
        }

        /// Waits until at least `count` operations are held, or `milliseconds` pass.
        @discardableResult
        public func waitUntilHolding(_ count: Int, milliseconds: Int) -> Bool {
            let deadline = MonotonicClock.deadline(afterMilliseconds: milliseconds)
            return condition.withLock {
                while state.withLock({ $0.waiting }) < count {
                    if !condition.wait(until: deadline) { return state.withLock { $0.waiting } >= count }
                }
                return true
            }
        }

        func pass() {
            condition.withLock {
                state.withLock { $0.waiting += 1 }
                condition.broadcast()
                while !state.withLock({ $0.open }) { condition.wait() }
                state.withLock { $0.waiting -= 1 }
            }
        }

        public static func == (a: Gate, b: Gate) -> Bool { a === b }
        public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }
    }

    /// Identifies an added rule, for ``removeRule(_:)`` and ``faultCount(for:)``.
    public struct RuleID: Hashable, Sendable {
        fileprivate let value: UInt64
    }

    /// The wrapped backend.
    public let base: any BlockBackend

    public var byteCount: UInt64 { base.byteCount }
    public var isReadOnly: Bool { base.isReadOnly }
    public var hasVolatileWriteCache: Bool { base.hasVolatileWriteCache }
    public var isRotational: Bool { base.isRotational }
    public var preferredBlockSize: Int? { base.preferredBlockSize }
    public var deallocatedReadsZeroes: Bool { base.deallocatedReadsZeroes }

    private struct Entry {
        let id: RuleID
        let rule: Rule
        var injected: Int
    }

    private struct State {
        var entries: [Entry] = []
        var nextID: UInt64 = 0
        var injectedTotal = 0
    }

    private let state = Locked(State())

    public init(wrapping base: any BlockBackend) {
        self.base = base
    }

    /// Adds a rule after the existing ones; it applies to operations that start from
    /// now on.
    @discardableResult
    public func addRule(_ rule: Rule) -> RuleID {
        state.withLock { state in
            let id = RuleID(value: state.nextID)
            state.nextID += 1
            state.entries.append(Entry(id: id, rule: rule, injected: 0))
            return id
        }
    }

    /// Removes a rule; returns `false` if it was not there. The total in
    /// ``injectedFaultCount`` keeps the faults it injected.
    @discardableResult
    public func removeRule(_ id: RuleID) -> Bool {
        state.withLock { state in
            guard let index = state.entries.firstIndex(where: { $0.id == id }) else { return false }
            state.entries.remove(at: index)
            return true
        }
    }

    /// Removes every rule.
    public func removeAllRules() {
        state.withLock { $0.entries.removeAll() }
    }

    /// The rules in the order they apply (exhausted ones included).
    public var rules: [Rule] {
        state.withLock { $0.entries.map(\.rule) }
    }

    /// Faults injected since creation, by every rule, removed ones included.
    public var injectedFaultCount: Int {
        state.withLock { $0.injectedTotal }
    }

    /// Faults injected by one rule, or `nil` if it has been removed.
    public func faultCount(for id: RuleID) -> Int? {
        state.withLock { state in state.entries.first(where: { $0.id == id })?.injected }
    }

    // MARK: BlockBackend

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(BackendError) {
        try pass(.read, offset: offset, length: UInt64(buffer.count)) { () throws(BackendError) in
            try base.read(at: offset, into: buffer)
        }
    }

    public func write(at offset: UInt64, from buffer: UnsafeRawBufferPointer, forceUnitAccess: Bool)
        throws(BackendError)
    {
        try pass(.write, offset: offset, length: UInt64(buffer.count)) { () throws(BackendError) in
            try base.write(at: offset, from: buffer, forceUnitAccess: forceUnitAccess)
        }
    }

    public func flush() throws(BackendError) {
        try pass(.flush, offset: 0, length: byteCount) { () throws(BackendError) in try base.flush() }
    }

    public func deallocate(at offset: UInt64, length: UInt64) throws(BackendError) {
        try pass(.deallocate, offset: offset, length: length) { () throws(BackendError) in
            try base.deallocate(at: offset, length: length)
        }
    }

    public func writeZeroes(at offset: UInt64, length: UInt64, deallocate: Bool) throws(BackendError) {
        try pass(.writeZeroes, offset: offset, length: length) { () throws(BackendError) in
            try base.writeZeroes(at: offset, length: length, deallocate: deallocate)
        }
    }

    public func writeZeroesQuickly(at offset: UInt64, length: UInt64, deallocate: Bool) throws(BackendError) {
        try pass(.writeZeroes, offset: offset, length: length) { () throws(BackendError) in
            try base.writeZeroesQuickly(at: offset, length: length, deallocate: deallocate)
        }
    }

    public func read(at offset: UInt64, into vector: IOVector) throws(BackendError) {
        try pass(.read, offset: offset, length: UInt64(vector.byteCount)) { () throws(BackendError) in
            try base.read(at: offset, into: vector)
        }
    }

    public func write(at offset: UInt64, from vector: IOVector, forceUnitAccess: Bool) throws(BackendError) {
        try pass(.write, offset: offset, length: UInt64(vector.byteCount)) { () throws(BackendError) in
            try base.write(at: offset, from: vector, forceUnitAccess: forceUnitAccess)
        }
    }

    public func allocationMap(at offset: UInt64, length: UInt64) throws(BackendError) -> [AllocationExtent] {
        try pass(.allocationMap, offset: offset, length: length) { () throws(BackendError) in
            try base.allocationMap(at: offset, length: length)
        }
    }

    /// What every ``BlockBackend`` method of this wrapper does, in order: the range
    /// check (with the read-only check for an operation that changes data), then the
    /// fault rules (``injectFault(_:offset:length:)``), then `forward` to the wrapped
    /// backend. A failed check or an injected fault never reaches `base`.
    @inline(__always)
    private func pass<T>(
        _ operation: Operations, offset: UInt64, length: UInt64,
        _ forward: () throws(BackendError) -> T
    ) throws(BackendError) -> T {
        if Operations.mutating.contains(operation) {
            try checkWritable(offset, length, operation.name)
        } else if operation != .flush {
            try checkRange(offset, length, operation.name)
        }
        try injectFault(operation, offset: offset, length: length)
        return try forward()
    }

    /// Throws the first matching rule's errno, counting it, or waits at its gate.
    /// The range was checked, so `offset + length` does not overflow.
    private func injectFault(_ operation: Operations, offset: UInt64, length: UInt64) throws(BackendError) {
        let end = offset + length
        var gate: Gate? = nil
        let errno: Int32? = state.withLock { state in
            for index in state.entries.indices {
                let rule = state.entries[index].rule
                guard rule.operations.contains(operation) else { continue }
                if let range = rule.range, !(offset < range.upperBound && range.lowerBound < end) { continue }
                if let limit = rule.failureLimit, state.entries[index].injected >= limit { continue }
                state.entries[index].injected += 1
                state.injectedTotal += 1
                if let hold = rule.hold {
                    gate = hold
                    return rule.errno == 0 ? nil : rule.errno
                }
                return rule.errno
            }
            return nil
        }
        gate?.pass()
        if let errno {
            throw BackendError(.system(errno: errno), operation: operation.name, offset: offset, length: length)
        }
    }
}
