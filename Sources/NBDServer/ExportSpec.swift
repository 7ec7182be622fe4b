import BlockBackends

/// What one export is: its name, backing, size and LBA format, and how its
/// storage runs, as given on the command line
/// (`--export name=disk,file=disk.img,cache=none,aio=io_uring`) or built in code.
public struct ExportSpec: Hashable, Sendable {
    public enum Backing: Hashable, Sendable {
        /// Sparse process memory.
        case memory
        /// A regular file or block device; created sparse with the export size when missing.
        case file(path: String)
    }

    public var name: String
    /// Sent in NBD_INFO_DESCRIPTION and NBD_REP_SERVER.
    public var exportDescription: String?
    public var backing: Backing
    /// Bytes (a positive multiple of 512); `nil` means "the file's size" (file
    /// backing only; an existing file may have any size).
    public var size: UInt64?
    /// NVMe LBA data size, 512 or 4096; `nil` picks what the storage prefers (a
    /// block device's logical block size, the alignment direct I/O needs), else 512.
    public var blockSize: Int?
    public var readOnly: Bool
    /// File backing: through the page cache or `O_DIRECT` (`cache=`).
    public var cache: FileCaching
    /// How the backend's operations run (`aio=`); `nil`: io_uring for files and
    /// block devices (worker threads where refused), inline for memory.
    public var io: StorageIO?

    public init(
        name: String = "", description: String? = nil, backing: Backing = .memory, size: UInt64? = 1 << 30,
        blockSize: Int? = nil, readOnly: Bool = false, cache: FileCaching = .writeback, io: StorageIO? = nil
    ) {
        self.name = name
        self.exportDescription = description
        self.backing = backing
        self.size = size
        self.blockSize = blockSize
        self.readOnly = readOnly
        self.cache = cache
        self.io = io
    }

    /// The default export: 1 GiB of memory named "".
    public static let `default` = ExportSpec()

    /// The keys ``parse(_:)`` accepts, for help texts.
    public static let syntax =
        "name=NAME,size=SIZE[K|M|G|T],file=PATH,lba=512|4096,cache=writeback|none,aio=io_uring|threads,readonly,description=TEXT"

    /// Parses a comma-separated `key=value` list. Keys: `name` (default ""), `size`
    /// (bytes or with a binary K/M/G/T suffix; default 1G for memory, the file's
    /// size for an existing file), `file` (file or block device backing; memory
    /// otherwise), `lba` (512 or 4096), `cache` (`writeback` or `none`, files
    /// only), `aio` (`io_uring` or `threads`), `readonly` (or `ro`), `description`.
    /// `description` may contain commas only as the last key.
    public static func parse(_ text: String) throws(ExportSpecError) -> ExportSpec {
        var spec = ExportSpec(size: nil)
        var sawSize = false
        var rest = Substring(text)
        while !rest.isEmpty {
            let item: Substring
            if rest.hasPrefix("description=") {
                item = rest
                rest = ""
            } else if let comma = rest.firstIndex(of: ",") {
                item = rest[..<comma]
                rest = rest[rest.index(after: comma)...]
            } else {
                item = rest
                rest = ""
            }
            let key: Substring
            let value: Substring?
            if let eq = item.firstIndex(of: "=") {
                key = item[..<eq]
                value = item[item.index(after: eq)...]
            } else {
                key = item
                value = nil
            }
            func required() throws(ExportSpecError) -> String {
                guard let value else { throw ExportSpecError("'\(key)' needs a value (\(key)=...)", text) }
                return String(value)
            }
            switch key {
            case "name":
                let n = try required()
                guard n.utf8.count <= 4096 else { throw ExportSpecError("export name is longer than 4096 bytes", text) }
                spec.name = n
            case "size":
                let s = try required()
                guard let bytes = parseSize(s) else {
                    throw ExportSpecError("size '\(s)' is not a number of bytes (suffixes K, M, G, T are binary)", text)
                }
                spec.size = bytes
                sawSize = true
            case "file":
                let p = try required()
                guard !p.isEmpty else { throw ExportSpecError("file= needs a path", text) }
                spec.backing = .file(path: p)
            case "memory":
                spec.backing = .memory
            case "lba", "block-size":
                let v = try required()
                guard let n = Int(v), n == 512 || n == 4096 else {
                    throw ExportSpecError("lba=\(v): accepted 512 or 4096", text)
                }
                spec.blockSize = n
            case "cache":
                let v = try required()
                guard let c = FileCaching(rawValue: v) else {
                    throw ExportSpecError("cache=\(v): accepted writeback or none", text)
                }
                spec.cache = c
            case "aio":
                let v = try required()
                switch v {
                case "io_uring": spec.io = .ioUring
                case "threads": spec.io = .threads(workers: StorageIO.defaultWorkers)
                default: throw ExportSpecError("aio=\(v): accepted io_uring or threads", text)
                }
            case "readonly", "ro":
                guard value == nil || value == "true" || value == "1" else {
                    throw ExportSpecError("readonly takes no value", text)
                }
                spec.readOnly = true
            case "description":
                spec.exportDescription = try required()
            case "":
                continue
            default:
                throw ExportSpecError("unknown key '\(key)'; accepted: \(syntax)", text)
            }
        }
        if !sawSize, case .memory = spec.backing { spec.size = 1 << 30 }
        if let size = spec.size {
            guard size > 0, size % 512 == 0 else {
                throw ExportSpecError(
                    "size \(size) must be a positive multiple of 512 bytes "
                        + "(an existing file of any size is served whole: omit size=)", text)
            }
        }
        if spec.cache != .writeback, case .memory = spec.backing {
            throw ExportSpecError("cache= applies to file exports (file=PATH) only", text)
        }
        return spec
    }

    /// "123", "4k", "512M", "1G", "2T" (binary multiples), "1GiB".
    public static func parseSize(_ s: String) -> UInt64? {
        var digits = Substring(s.trimmingSpaces())
        var multiplier: UInt64 = 1
        for (suffix, m) in [
            ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10),
            ("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10),
            ("t", 1 << 40), ("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10),
        ] as [(String, UInt64)] {
            if digits.hasSuffix(suffix) {
                digits = digits.dropLast(suffix.count)
                multiplier = m
                break
            }
        }
        guard let n = UInt64(digits) else { return nil }
        let (r, overflow) = n.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : r
    }

    /// One line for logs: name, backing, size, LBA size.
    public var summary: String {
        let backingText: String
        switch backing {
        case .memory: backingText = "memory"
        case .file(let p): backingText = "file \(p)"
        }
        var cacheText = ""
        if case .file = backing { cacheText = ", cache=\(cache.rawValue)" }
        return "export '\(name)': \(backingText), \(size.map { "\($0) bytes" } ?? "file size")\(cacheText)"
            + "\(readOnly ? ", read-only" : "")"
    }
}

/// A bad `--export` value: what was wrong, and the text it was found in.
public struct ExportSpecError: Error, Hashable, Sendable, CustomStringConvertible {
    public var problem: String
    public var text: String
    init(_ problem: String, _ text: String) {
        self.problem = problem
        self.text = text
    }
    public var description: String { "--export '\(text)': \(problem)" }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
