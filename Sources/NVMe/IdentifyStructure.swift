/// How an Identify field reads, as `nvme id-ctrl` / `nvme id-ns` print it.
public enum IdentifyFieldFormat: Hashable, Sendable {
    /// A little-endian integer printed in decimal.
    case decimal
    /// A little-endian integer printed as `0x…`.
    case hexadecimal
    /// A little-endian integer printed as `digits` zero-padded hex digits, no prefix.
    case hexadecimalDigits(Int)
    /// ASCII text padded with `pad` (spaces for SN, MN, FR; NUL for SUBNQN).
    case text(pad: UInt8)
    /// An identifier whose bytes print in order as hex (NGUID, EUI64: big endian).
    case identifier
}

/// A field of an Identify data structure: its byte range and format. The field
/// enumerations of ``IdentifyController`` and ``IdentifyNamespace`` name their
/// cases as nvme-cli does and list them in byte order.
public protocol IdentifyFieldKey: RawRepresentable<String>, CaseIterable, Hashable, Sendable {
    /// The bytes of the 4096-byte structure the field occupies.
    var bytes: Range<Int> { get }
    var format: IdentifyFieldFormat { get }
}

/// A 4096-byte Identify data structure (NVMe Base Specification 2.0, §5.17.2),
/// held as its bytes: each field is read and written where its
/// ``IdentifyFieldKey`` says, so the layout is stated once.
public protocol IdentifyStructure: Hashable, Sendable {
    associatedtype Field: IdentifyFieldKey
    /// The structure as the controller returns it.
    var bytes: [UInt8] { get set }
    /// This device's values.
    init()
}

extension IdentifyStructure {
    public static var size: Int { 4096 }

    /// The integer `field` (little endian).
    public subscript(field: Field) -> UInt64 {
        get { bytes.littleEndian(at: field.bytes.lowerBound, width: field.bytes.count) }
        set { bytes.putLittleEndian(newValue, at: field.bytes.lowerBound, width: field.bytes.count) }
    }

    /// The text `field`, without its padding.
    public subscript(text field: Field) -> String {
        get {
            var run = bytes[field.bytes].prefix { $0 != 0 }
            while run.last == 0x20 { run = run.dropLast() }
            return String(decoding: run, as: UTF8.self)
        }
        set {
            guard case .text(let pad) = field.format else { preconditionFailure("\(field) is not text") }
            let utf8 = Array(newValue.utf8.prefix(field.bytes.count))
            for (i, o) in field.bytes.enumerated() { bytes[o] = i < utf8.count ? utf8[i] : pad }
        }
    }

    /// The bytes of `field`, in order.
    public subscript(identifier field: Field) -> [UInt8] {
        get { Array(bytes[field.bytes]) }
        set { bytes.replaceSubrange(field.bytes, with: newValue.prefix(field.bytes.count)) }
    }

    /// The structure as received: the first ``size`` bytes of `b`.
    public init(decoding b: [UInt8]) {
        precondition(b.count >= Self.size)
        self.init()
        bytes = Array(b.prefix(Self.size))
    }

    public func encode() -> [UInt8] { bytes }

    /// Every field as nvme-cli prints it: its name and its value.
    public var report: [(name: String, value: String)] {
        Field.allCases.map { f in
            switch f.format {
            case .decimal: (f.rawValue, "\(self[f])")
            case .hexadecimal: (f.rawValue, "0x" + String(self[f], radix: 16))
            case .hexadecimalDigits(let n): (f.rawValue, Self.padded(String(self[f], radix: 16), n))
            case .text: (f.rawValue, self[text: f])
            case .identifier: (f.rawValue, self[identifier: f].map { Self.padded(String($0, radix: 16), 2) }.joined())
            }
        }
    }

    private static func padded(_ hex: String, _ digits: Int) -> String {
        String(repeating: "0", count: max(0, digits - hex.count)) + hex
    }
}
