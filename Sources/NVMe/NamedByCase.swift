/// An enumeration whose case names, split into words, are the specification's
/// names: `deleteIOSubmissionQueue` reads "Delete I/O Submission Queue", as the
/// NVMe Base Specification 2.0 names the command in §5, Figure 28. The case is
/// the one definition of the name.
public protocol NamedByCase {}

extension NamedByCase {
    /// The specification's name of this case, for messages and logs.
    public var specName: String { specificationWords(String(describing: self)) }
}

/// Splits a lower camel case identifier into capitalised words, keeping an
/// acronym whole ("IOSubmission" → "IO", "Submission") and spelling `IO` as the
/// specification does, "I/O".
func specificationWords(_ identifier: String) -> String {
    let characters = Array(identifier)
    var words: [String] = []
    var word = ""
    for (i, c) in characters.enumerated() {
        let previousIsLower = i > 0 && characters[i - 1].isLowercase
        let acronymEnds =
            i > 0 && characters[i - 1].isUppercase && i + 1 < characters.count
            && characters[i + 1].isLowercase
        if c.isUppercase, previousIsLower || acronymEnds, !word.isEmpty {
            words.append(word)
            word = ""
        }
        word.append(c)
    }
    if !word.isEmpty { words.append(word) }
    return words.map { $0 == "IO" ? "I/O" : $0.prefix(1).uppercased() + $0.dropFirst() }.joined(separator: " ")
}
