/// One sample of a Prometheus text exposition: `name{labels} value`.
public struct PrometheusSample: Hashable, Sendable {
    public var name: String
    public var labels: [String: String]
    public var value: Double

    public init(name: String, labels: [String: String] = [:], value: Double) {
        self.name = name
        self.labels = labels
        self.value = value
    }
}

/// A parsed exposition: its samples in order and the `# TYPE` of each family.
public struct PrometheusScrape: Sendable {
    public var samples: [PrometheusSample] = []
    /// Family name → `counter`, `gauge`, `histogram`, `summary` or `untyped`.
    public var types: [String: String] = [:]

    public init() {}

    /// The samples of series `name` whose labels include every pair of `matching`.
    public func samples(_ name: String, matching: [String: String] = [:]) -> [PrometheusSample] {
        samples.filter { s in s.name == name && matching.allSatisfy { s.labels[$0.key] == $0.value } }
    }
}

/// A line of an exposition that is not the text format, with its number (from 1).
public struct PrometheusTextError: Error, Hashable, Sendable, CustomStringConvertible {
    public var line: Int
    public var problem: String
    public var description: String { "Prometheus text, line \(line): \(problem)" }
}

/// A parser of the Prometheus text exposition format 0.0.4 (what `/metrics`
/// serves): `# HELP` and `# TYPE` lines, other comments, and samples
/// `name{label="value",...} value [timestamp]`, label values with the `\\`,
/// `\"` and `\n` escapes, values as Go's `ParseFloat` writes them (`+Inf`,
/// `-Inf`, `NaN` included). Pure: bytes in, samples out.
public enum PrometheusText {
    public static func parse(_ text: String) throws(PrometheusTextError) -> PrometheusScrape {
        try parse(Array(text.utf8))
    }

    public static func parse(_ bytes: [UInt8]) throws(PrometheusTextError) -> PrometheusScrape {
        var scrape = PrometheusScrape()
        var lineNumber = 0
        var start = 0
        while start < bytes.count {
            lineNumber += 1
            var end = start
            while end < bytes.count && bytes[end] != UInt8(ascii: "\n") { end += 1 }
            var line = LineScanner(bytes: bytes, position: start, end: end, number: lineNumber)
            try line.parse(into: &scrape)
            start = end + 1
        }
        return scrape
    }
}

/// Scans one line of an exposition.
private struct LineScanner {
    let bytes: [UInt8]
    var position: Int
    var end: Int
    let number: Int

    init(bytes: [UInt8], position: Int, end: Int, number: Int) {
        self.bytes = bytes
        self.position = position
        // A CRLF line ending counts as LF.
        self.end = end > position && bytes[end - 1] == UInt8(ascii: "\r") ? end - 1 : end
        self.number = number
    }

    private func fail(_ problem: String) -> PrometheusTextError { PrometheusTextError(line: number, problem: problem) }

    private var current: UInt8? { position < end ? bytes[position] : nil }

    private mutating func skipBlanks() {
        while let c = current, c == UInt8(ascii: " ") || c == UInt8(ascii: "\t") { position += 1 }
    }

    /// A token up to the next blank or the end of the line.
    private mutating func word() -> String {
        let from = position
        while let c = current, c != UInt8(ascii: " ") && c != UInt8(ascii: "\t") { position += 1 }
        return String(decoding: bytes[from..<position], as: UTF8.self)
    }

    private static func isNameStart(_ c: UInt8) -> Bool {
        (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == UInt8(ascii: "_") || c == UInt8(ascii: ":")
    }

    private static func isNameByte(_ c: UInt8) -> Bool { isNameStart(c) || (c >= 0x30 && c <= 0x39) }

    private mutating func name(_ what: String) throws(PrometheusTextError) -> String {
        let from = position
        guard let c = current, Self.isNameStart(c) else { throw fail("expected a \(what) name") }
        position += 1
        while let c = current, Self.isNameByte(c) { position += 1 }
        return String(decoding: bytes[from..<position], as: UTF8.self)
    }

    mutating func parse(into scrape: inout PrometheusScrape) throws(PrometheusTextError) {
        skipBlanks()
        guard let first = current else { return }
        if first == UInt8(ascii: "#") {
            position += 1
            skipBlanks()
            let keyword = word()
            guard keyword == "TYPE" || keyword == "HELP" else { return }  // another comment
            skipBlanks()
            let family = try name("metric")
            if keyword == "TYPE" {
                skipBlanks()
                let type = word()
                guard ["counter", "gauge", "histogram", "summary", "untyped"].contains(type) else {
                    throw fail("unknown metric type '\(type)' for \(family)")
                }
                scrape.types[family] = type
            }
            return
        }
        let metric = try name("metric")
        var labels: [String: String] = [:]
        if current == UInt8(ascii: "{") {
            position += 1
            try parseLabels(into: &labels)
        }
        skipBlanks()
        let valueText = word()
        guard !valueText.isEmpty else { throw fail("\(metric): no value") }
        guard let value = Self.value(valueText) else { throw fail("\(metric): value '\(valueText)' is not a number") }
        skipBlanks()
        let timestamp = word()
        if !timestamp.isEmpty && Int64(timestamp) == nil {
            throw fail("\(metric): timestamp '\(timestamp)' is not an integer")
        }
        skipBlanks()
        guard current == nil else { throw fail("\(metric): unexpected text after the value") }
        scrape.samples.append(PrometheusSample(name: metric, labels: labels, value: value))
    }

    private mutating func parseLabels(into labels: inout [String: String]) throws(PrometheusTextError) {
        while true {
            skipBlanks()
            if current == UInt8(ascii: "}") {
                position += 1
                return
            }
            let label = try name("label")
            skipBlanks()
            guard current == UInt8(ascii: "=") else { throw fail("label \(label): expected '='") }
            position += 1
            skipBlanks()
            guard current == UInt8(ascii: "\"") else { throw fail("label \(label): expected a quoted value") }
            position += 1
            var value: [UInt8] = []
            while true {
                guard let c = current else { throw fail("label \(label): unterminated value") }
                position += 1
                if c == UInt8(ascii: "\"") { break }
                if c == UInt8(ascii: "\\") {
                    guard let e = current else { throw fail("label \(label): unterminated escape") }
                    position += 1
                    switch e {
                    case UInt8(ascii: "\\"): value.append(e)
                    case UInt8(ascii: "\""): value.append(e)
                    case UInt8(ascii: "n"): value.append(UInt8(ascii: "\n"))
                    default: throw fail("label \(label): unknown escape '\\\(Character(Unicode.Scalar(e)))'")
                    }
                } else {
                    value.append(c)
                }
            }
            guard labels.updateValue(String(decoding: value, as: UTF8.self), forKey: label) == nil else {
                throw fail("label \(label) given twice")
            }
            skipBlanks()
            if current == UInt8(ascii: ",") {
                position += 1
            } else if current != UInt8(ascii: "}") {
                throw fail("label \(label): expected ',' or '}'")
            }
        }
    }

    private static func value(_ text: String) -> Double? {
        switch text {
        case "+Inf", "Inf": return .infinity
        case "-Inf": return -.infinity
        case "NaN": return .nan
        default:
            // Double(_:) also takes "inf", "nan" and hex forms the format does not have.
            guard text.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || "+-.eE".utf8.contains($0) }) else { return nil }
            return Double(text)
        }
    }
}
