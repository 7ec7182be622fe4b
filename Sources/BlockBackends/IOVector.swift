/// One contiguous piece of memory a transfer reads into or writes from.
///
/// The memory belongs to whoever built the vector (host memory the controller
/// mapped through a command's PRPs): it stays valid and is not touched by
/// anyone else until the operation that carries it has completed.
public struct IOSegment: Sendable, Equatable {
    // The pointer is only carried, never owned: see the type's documentation.
    public nonisolated(unsafe) var base: UnsafeMutableRawPointer
    public var count: Int

    public init(base: UnsafeMutableRawPointer, count: Int) {
        precondition(count >= 0)
        self.base = base
        self.count = count
    }

    public var mutableBytes: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base, count: count)
    }
}

/// The memory of one transfer, as segments in transfer order (a PRP list turned
/// into host memory): what `preadv`/`pwritev` and io_uring `READV`/`WRITEV` take.
/// One segment — the common case, a buffer mapped in one piece — is stored
/// inline, without an array.
public struct IOVector: Sendable, Sequence, Equatable {
    private var first: IOSegment?
    private var rest: [IOSegment]
    /// Bytes in all segments.
    public private(set) var byteCount: Int

    public init() {
        first = nil
        rest = []
        byteCount = 0
    }

    public init(_ segment: IOSegment) {
        first = segment
        rest = []
        byteCount = segment.count
    }

    public init<S: Sequence>(_ segments: S) where S.Element == IOSegment {
        self.init()
        for s in segments { append(s) }
    }

    /// Appends a segment, merging it with the last one when they are adjacent.
    public mutating func append(_ segment: IOSegment) {
        guard segment.count > 0 else { return }
        byteCount += segment.count
        guard let f = first else {
            first = segment
            return
        }
        if rest.isEmpty {
            if f.base + f.count == segment.base { first!.count += segment.count } else { rest.append(segment) }
        } else if rest[rest.count - 1].base + rest[rest.count - 1].count == segment.base {
            rest[rest.count - 1].count += segment.count
        } else {
            rest.append(segment)
        }
    }

    public var segmentCount: Int { first == nil ? 0 : 1 + rest.count }

    public subscript(index: Int) -> IOSegment {
        index == 0 ? first! : rest[index - 1]
    }

    /// The first `count` bytes (the transfer clipped at the end of the storage).
    public func prefix(bytes count: Int) -> IOVector {
        var out = IOVector()
        var left = count
        for s in self where left > 0 {
            let n = Swift.min(left, s.count)
            out.append(IOSegment(base: s.base, count: n))
            left -= n
        }
        return out
    }

    /// The bytes from `offset` to the end (what is left after a short transfer).
    public func dropping(bytes offset: Int) -> IOVector {
        var out = IOVector()
        var skip = offset
        for s in self {
            if skip >= s.count {
                skip -= s.count
                continue
            }
            out.append(IOSegment(base: s.base + skip, count: s.count - skip))
            skip = 0
        }
        return out
    }

    /// Fills every byte with zero.
    public func zero() {
        for s in self { s.mutableBytes.initializeMemory(as: UInt8.self, repeating: 0) }
    }

    /// Copies `source` (at least ``byteCount`` bytes) into the segments.
    public func copy(from source: UnsafeRawPointer) {
        var done = 0
        for s in self {
            s.base.copyMemory(from: source + done, byteCount: s.count)
            done += s.count
        }
    }

    /// Copies the segments into `destination` (at least ``byteCount`` bytes).
    public func copy(to destination: UnsafeMutableRawPointer) {
        var done = 0
        for s in self {
            (destination + done).copyMemory(from: s.base, byteCount: s.count)
            done += s.count
        }
    }

    /// Whether every segment starts and ends on a multiple of `alignment` (a power of two).
    public func isAligned(to alignment: Int) -> Bool {
        let mask = alignment - 1
        for s in self where Int(bitPattern: s.base) & mask != 0 || s.count & mask != 0 { return false }
        return true
    }

    public func makeIterator() -> Iterator { Iterator(vector: self) }

    public struct Iterator: IteratorProtocol {
        let vector: IOVector
        var index = 0
        public mutating func next() -> IOSegment? {
            guard index < vector.segmentCount else { return nil }
            defer { index += 1 }
            return vector[index]
        }
    }
}
