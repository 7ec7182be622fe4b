import Foundation
import Testing

// MARK: Random data

/// `count` bytes from `generator`: each 8 bytes are one `next()` stored
/// little-endian, each byte of a shorter tail one `next()` truncated (fast in
/// debug builds too).
public func randomBytes(_ count: Int, using generator: inout some RandomNumberGenerator) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        let raw = UnsafeMutableRawBufferPointer(buffer)
        var i = 0
        while i + 8 <= count {
            raw.storeBytes(of: generator.next().littleEndian, toByteOffset: i, as: UInt64.self)
            i += 8
        }
        while i < count {
            raw[i] = UInt8(truncatingIfNeeded: generator.next())
            i += 1
        }
        initialized = count
    }
}

/// `count` bytes of fixed test data: the same for the same `seed`, always.
public func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var generator = SplitMix64(seed: seed)
    return randomBytes(count, using: &generator)
}

// MARK: Byte comparison

/// How `actual` differs from `expected`: the counts, or how many bytes differ and
/// the first difference; nil when they are equal (memcmp).
public func byteDifference(_ actual: UnsafeRawBufferPointer, _ expected: UnsafeRawBufferPointer) -> String? {
    guard actual.count == expected.count else { return "got \(actual.count) bytes, expected \(expected.count)" }
    if actual.count == 0 || memcmp(actual.baseAddress!, expected.baseAddress!, actual.count) == 0 { return nil }
    var first = 0
    while actual[first] == expected[first] { first += 1 }
    var differing = 0
    for i in first..<actual.count where actual[i] != expected[i] { differing += 1 }
    return
        "\(differing) of \(actual.count) bytes differ, first at index \(first): got \(actual[first]), expected \(expected[first])"
}

/// ``byteDifference(_:_:)`` of two arrays.
public func byteDifference(_ actual: [UInt8], _ expected: [UInt8]) -> String? {
    actual.withUnsafeBytes { a in expected.withUnsafeBytes { e in byteDifference(a, e) } }
}

/// Compares byte for byte (memcmp) and, when they differ, records one issue with
/// how many bytes differ and the first difference. `#expect(a == b)` on large
/// arrays makes Swift Testing diff them, which takes minutes for megabytes.
@discardableResult
public func expectBytes(
    _ actual: UnsafeRawBufferPointer, _ expected: UnsafeRawBufferPointer, _ note: @autoclosure () -> String = "",
    sourceLocation: SourceLocation = #_sourceLocation
) -> Bool {
    guard let difference = byteDifference(actual, expected) else { return true }
    let text = note()
    Issue.record("\(text.isEmpty ? "" : text + ": ")\(difference)", sourceLocation: sourceLocation)
    return false
}

@discardableResult
public func expectBytes(
    _ actual: [UInt8], _ expected: [UInt8], _ note: @autoclosure () -> String = "",
    sourceLocation: SourceLocation = #_sourceLocation
) -> Bool {
    actual.withUnsafeBytes { a in
        expected.withUnsafeBytes { e in expectBytes(a, e, note(), sourceLocation: sourceLocation) }
    }
}

@discardableResult
public func expectBytes<Expected: Collection<UInt8>>(
    _ actual: [UInt8], _ expected: Expected, _ note: @autoclosure () -> String = "",
    sourceLocation: SourceLocation = #_sourceLocation
) -> Bool {
    expectBytes(actual, Array(expected), note(), sourceLocation: sourceLocation)
}

/// Expects every byte to be zero; records the first that is not.
public func expectZeroes(
    _ actual: [UInt8], _ note: @autoclosure () -> String = "",
    sourceLocation: SourceLocation = #_sourceLocation
) {
    if let i = actual.firstIndex(where: { $0 != 0 }) {
        let text = note()
        Issue.record(
            "\(text.isEmpty ? "" : text + ": ")byte \(i) of \(actual.count) is \(actual[i]), expected zeroes",
            sourceLocation: sourceLocation)
    }
}
