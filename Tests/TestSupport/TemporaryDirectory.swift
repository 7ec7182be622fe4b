import Foundation

/// Makes a fresh directory `parent/prefix.XXXXXX` with mkdtemp(3) and returns its path.
public func makeTemporaryDirectory(
    under parent: String = NSTemporaryDirectory(),
    prefix: String = "nvme-nbd-test"
) throws -> String {
    var template = Array((parent.hasSuffix("/") ? parent : parent + "/").utf8CString.dropLast())
    template += Array("\(prefix).XXXXXX".utf8CString)
    let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    guard made != nil else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    return template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}

/// A directory made with ``makeTemporaryDirectory(under:prefix:)``, removed with
/// its contents when the last reference goes away.
public final class TemporaryDirectory: Sendable {
    public let path: String

    public init(under parent: String = NSTemporaryDirectory(), prefix: String = "nvme-nbd-test") throws {
        path = try makeTemporaryDirectory(under: parent, prefix: prefix)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }
}
