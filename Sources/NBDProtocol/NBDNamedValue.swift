/// A protocol value carried as a raw integer that stays representable when this
/// implementation does not know it: a request, option, reply or information type,
/// an error value (proto.md, "Values").
///
/// Each type lists the names proto.md gives the values it knows, once, in
/// ``names``; ``description`` derives from that list, and prints any other value
/// as ``unknownPrefix`` and its number (`NBD_CMD(42)`).
public protocol NBDNamedValue: RawRepresentable, Hashable, Sendable, CustomStringConvertible
where RawValue: FixedWidthInteger {
    /// proto.md's name of each value this implementation knows.
    static var names: [Self: String] { get }
    /// What a value without a name is printed as, before its number in parentheses.
    static var unknownPrefix: String { get }
}

extension NBDNamedValue {
    public var description: String { Self.names[self] ?? "\(Self.unknownPrefix)(\(rawValue))" }
}
