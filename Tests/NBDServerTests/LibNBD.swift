import CNBD
import Foundation

/// A failed libnbd call: `nbd_get_errno()` and `nbd_get_error()` captured right
/// after the failure (both are thread-local in libnbd).
struct LibNBDError: Error, CustomStringConvertible, Sendable {
    var operation: String
    var errno: Int32
    var message: String

    static func last(_ operation: String) -> LibNBDError {
        let e = nbd_get_errno()
        let m = nbd_get_error().map { String(cString: $0) } ?? "(no message)"
        return LibNBDError(operation: operation, errno: e, message: m)
    }

    var description: String { "\(operation): errno \(errno) (\(String(cString: strerror(errno)))): \(message)" }
}

/// One extent of a `base:allocation` block status reply.
struct Extent: Hashable, Sendable, CustomStringConvertible {
    var length: UInt32
    var flags: UInt32
    var isHole: Bool { flags & UInt32(LIBNBD_STATE_HOLE) != 0 }
    var isZero: Bool { flags & UInt32(LIBNBD_STATE_ZERO) != 0 }
    var description: String { "\(length)\(isHole ? " hole" : "")\(isZero ? " zero" : "")" }
}

/// One chunk seen by `nbd_pread_structured`'s chunk callback.
struct ReadChunk: Hashable, Sendable {
    enum Kind: Hashable, Sendable { case data, hole, error }
    var kind: Kind
    var offset: UInt64
    var count: Int
}

/// A thin wrapper over one libnbd handle (tests only: the server never links
/// libnbd). Calls block the calling thread, which is fine: the server runs on
/// NIO and controller threads, never on Swift concurrency's pool.
final class NBDClient {
    let h: OpaquePointer

    init() throws(LibNBDError) {
        guard let h = nbd_create() else { throw .last("nbd_create") }
        self.h = h
    }

    deinit { nbd_close(h) }

    private func check(_ rc: Int32, _ operation: @autoclosure () -> String) throws(LibNBDError) {
        if rc == -1 { throw .last(operation()) }
    }

    private func bool(_ rc: Int32, _ operation: String) throws(LibNBDError) -> Bool {
        try check(rc, operation)
        return rc != 0
    }

    // MARK: Settings (before connecting)

    /// What libnbd is told before it connects (nbd_set_request_structured_replies(3),
    /// nbd_add_meta_context(3), nbd_set_strict_mode(3), nbd_set_full_info(3),
    /// nbd_set_opt_mode(3)); the defaults are libnbd's own.
    struct Settings {
        var structuredReplies = true
        var metaContexts: [String] = []
        /// `0` lets requests through that libnbd would refuse locally, so the
        /// server's answer is what the test sees; nil: libnbd's default.
        var strictMode: UInt32? = nil
        var fullInfo = false
        /// Stop after the handshake's start so the test sends options itself.
        var optMode = false
    }

    convenience init(_ settings: Settings) throws(LibNBDError) {
        try self.init()
        try check(nbd_set_request_structured_replies(h, settings.structuredReplies), "set_request_structured_replies")
        for context in settings.metaContexts {
            try check(nbd_add_meta_context(h, context), "add_meta_context \(context)")
        }
        if let flags = settings.strictMode { try check(nbd_set_strict_mode(h, flags), "set_strict_mode") }
        if settings.fullInfo { try check(nbd_set_full_info(h, true), "set_full_info") }
        if settings.optMode { try check(nbd_set_opt_mode(h, true), "set_opt_mode") }
    }

    // MARK: Connecting

    func connect(uri: String) throws(LibNBDError) {
        try check(nbd_connect_uri(h, uri), "connect_uri \(uri)")
    }

    /// Connects to the Unix socket at `path`, asking for export `name`.
    func connect(unix path: String, export name: String) throws(LibNBDError) {
        try check(nbd_set_export_name(h, name), "set_export_name")
        try check(nbd_connect_unix(h, path), "connect_unix \(path)")
    }

    /// Option mode: `NBD_OPT_LIST`, returning (name, description) pairs.
    func optList() throws(LibNBDError) -> [(String, String)] {
        final class Box { var items: [(String, String)] = [] }
        let box = Box()
        let cb = nbd_list_callback(
            callback: { ud, name, desc in
                let box = Unmanaged<Box>.fromOpaque(ud!).takeUnretainedValue()
                box.items.append((name.map { String(cString: $0) } ?? "", desc.map { String(cString: $0) } ?? ""))
                return 0
            }, user_data: Unmanaged.passUnretained(box).toOpaque(), free: nil)
        let rc = withExtendedLifetime(box) { nbd_opt_list(h, cb) }
        try check(rc, "opt_list")
        return box.items
    }

    func optGo() throws(LibNBDError) { try check(nbd_opt_go(h), "opt_go") }
    func optAbort() throws(LibNBDError) { try check(nbd_opt_abort(h), "opt_abort") }

    /// Closes the connection (NBD_CMD_DISC after the replies in flight).
    func shutdown() throws(LibNBDError) { try check(nbd_shutdown(h, 0), "shutdown") }

    // MARK: What the server advertised

    var size: Int64 {
        get throws(LibNBDError) {
            let s = nbd_get_size(h)
            if s < 0 { throw .last("get_size") }
            return s
        }
    }

    var isReadOnly: Bool { get throws(LibNBDError) { try bool(nbd_is_read_only(h), "is_read_only") } }
    var canFlush: Bool { get throws(LibNBDError) { try bool(nbd_can_flush(h), "can_flush") } }
    var canFUA: Bool { get throws(LibNBDError) { try bool(nbd_can_fua(h), "can_fua") } }
    var canTrim: Bool { get throws(LibNBDError) { try bool(nbd_can_trim(h), "can_trim") } }
    var canZero: Bool { get throws(LibNBDError) { try bool(nbd_can_zero(h), "can_zero") } }
    var canFastZero: Bool { get throws(LibNBDError) { try bool(nbd_can_fast_zero(h), "can_fast_zero") } }
    var canDF: Bool { get throws(LibNBDError) { try bool(nbd_can_df(h), "can_df") } }
    var canMultiConn: Bool { get throws(LibNBDError) { try bool(nbd_can_multi_conn(h), "can_multi_conn") } }
    var canCache: Bool { get throws(LibNBDError) { try bool(nbd_can_cache(h), "can_cache") } }
    var isRotational: Bool { get throws(LibNBDError) { try bool(nbd_is_rotational(h), "is_rotational") } }
    var structuredRepliesNegotiated: Bool {
        get throws(LibNBDError) { try bool(nbd_get_structured_replies_negotiated(h), "structured_replies_negotiated") }
    }

    func canMetaContext(_ name: String) throws(LibNBDError) -> Bool {
        try bool(nbd_can_meta_context(h, name), "can_meta_context")
    }

    /// `LIBNBD_SIZE_MINIMUM`, `_PREFERRED` or `_MAXIMUM`.
    func blockSize(_ type: Int32) throws(LibNBDError) -> Int64 {
        let s = nbd_get_block_size(h, type)
        if s < 0 { throw .last("get_block_size") }
        return s
    }

    var exportDescription: String? {
        guard let p = nbd_get_export_description(h) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    var canonicalExportName: String? {
        guard let p = nbd_get_canonical_export_name(h) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    var `protocol`: String { nbd_get_protocol(h).map { String(cString: $0) } ?? "" }

    // MARK: Synchronous commands

    func pread(count: Int, offset: UInt64, flags: UInt32 = 0) throws(LibNBDError) -> [UInt8] {
        var out = [UInt8](repeating: 0xA5, count: count)
        let rc = out.withUnsafeMutableBytes {
            nbd_pread(h, $0.baseAddress ?? UnsafeMutableRawPointer(bitPattern: 1)!, count, offset, flags)
        }
        try check(rc, "pread \(count)@\(offset) flags \(flags)")
        return out
    }

    func pwrite(_ data: [UInt8], offset: UInt64, flags: UInt32 = 0) throws(LibNBDError) {
        let rc = data.withUnsafeBytes {
            nbd_pwrite(h, $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, data.count, offset, flags)
        }
        try check(rc, "pwrite \(data.count)@\(offset) flags \(flags)")
    }

    func flush(flags: UInt32 = 0) throws(LibNBDError) { try check(nbd_flush(h, flags), "flush") }

    func trim(count: UInt64, offset: UInt64, flags: UInt32 = 0) throws(LibNBDError) {
        try check(nbd_trim(h, count, offset, flags), "trim \(count)@\(offset)")
    }

    func zero(count: UInt64, offset: UInt64, flags: UInt32 = 0) throws(LibNBDError) {
        try check(nbd_zero(h, count, offset, flags), "zero \(count)@\(offset) flags \(flags)")
    }

    func cache(count: UInt64, offset: UInt64, flags: UInt32 = 0) throws(LibNBDError) {
        try check(nbd_cache(h, count, offset, flags), "cache \(count)@\(offset)")
    }

    /// The `base:allocation` extents of `[offset, offset+count)` (what the server
    /// sent, in order; the last one may reach past the range).
    func blockStatus(count: UInt64, offset: UInt64, flags: UInt32 = 0) throws(LibNBDError) -> [Extent] {
        final class Box { var extents: [Extent] = []; var contexts: [String] = []; var offsets: [UInt64] = [] }
        let box = Box()
        let cb = nbd_extent_callback(
            callback: { ud, context, offset, entries, n, _ in
                let box = Unmanaged<Box>.fromOpaque(ud!).takeUnretainedValue()
                box.contexts.append(context.map { String(cString: $0) } ?? "")
                box.offsets.append(offset)
                var i = 0
                while i + 1 < n {
                    box.extents.append(Extent(length: entries![i], flags: entries![i + 1]))
                    i += 2
                }
                return 0
            }, user_data: Unmanaged.passUnretained(box).toOpaque(), free: nil)
        let rc = withExtendedLifetime(box) { nbd_block_status(h, count, offset, cb, flags) }
        try check(rc, "block_status \(count)@\(offset) flags \(flags)")
        guard box.contexts.allSatisfy({ $0 == "base:allocation" }) else {
            throw LibNBDError(operation: "block_status", errno: 0, message: "unexpected contexts \(box.contexts)")
        }
        return box.extents
    }

    /// `nbd_pread_structured`: the data and the chunks it arrived in.
    func preadStructured(count: Int, offset: UInt64, flags: UInt32 = 0) throws(LibNBDError) -> ([UInt8], [ReadChunk]) {
        final class Box { var chunks: [ReadChunk] = [] }
        let box = Box()
        let cb = nbd_chunk_callback(
            callback: { ud, _, count, offset, status, _ in
                let box = Unmanaged<Box>.fromOpaque(ud!).takeUnretainedValue()
                let kind: ReadChunk.Kind =
                    switch Int32(status) {
                    case LIBNBD_READ_DATA: .data
                    case LIBNBD_READ_HOLE: .hole
                    default: .error
                    }
                box.chunks.append(ReadChunk(kind: kind, offset: offset, count: count))
                return 0
            }, user_data: Unmanaged.passUnretained(box).toOpaque(), free: nil)
        var out = [UInt8](repeating: 0xA5, count: count)
        let rc = withExtendedLifetime(box) {
            out.withUnsafeMutableBytes { nbd_pread_structured(h, $0.baseAddress!, count, offset, cb, flags) }
        }
        try check(rc, "pread_structured \(count)@\(offset)")
        return (out, box.chunks.sorted { $0.offset < $1.offset })
    }

    // MARK: Asynchronous commands

    private static var noCompletion: nbd_completion_callback {
        nbd_completion_callback(callback: nil, user_data: nil, free: nil)
    }

    /// Starts a read into `buffer` (which must stay valid until the command completes).
    func aioPread(_ buffer: UnsafeMutableRawBufferPointer, offset: UInt64, flags: UInt32 = 0) throws(LibNBDError)
        -> Int64
    {
        let cookie = nbd_aio_pread(h, buffer.baseAddress!, buffer.count, offset, Self.noCompletion, flags)
        if cookie < 0 { throw .last("aio_pread \(buffer.count)@\(offset)") }
        return cookie
    }

    /// Starts a write from `buffer` (libnbd does not copy: it must stay valid until the command completes).
    func aioPwrite(_ buffer: UnsafeRawBufferPointer, offset: UInt64, flags: UInt32 = 0) throws(LibNBDError) -> Int64 {
        let cookie = nbd_aio_pwrite(h, buffer.baseAddress!, buffer.count, offset, Self.noCompletion, flags)
        if cookie < 0 { throw .last("aio_pwrite \(buffer.count)@\(offset)") }
        return cookie
    }

    /// `true` once the command has completed successfully, `false` while it is in
    /// flight; throws the command's error (and retires it).
    func aioCommandCompleted(_ cookie: Int64) throws(LibNBDError) -> Bool {
        try bool(nbd_aio_command_completed(h, UInt64(cookie)), "aio_command_completed \(cookie)")
    }

    var aioInFlight: Int { Int(nbd_aio_in_flight(h)) }
    var isDead: Bool { nbd_aio_is_dead(h) == 1 }
    var isClosed: Bool { nbd_aio_is_closed(h) == 1 }

    /// Waits up to `timeoutMilliseconds` for the socket and moves the state
    /// machine on; returns 0 on timeout.
    @discardableResult
    func poll(timeoutMilliseconds: Int32) throws(LibNBDError) -> Int32 {
        let rc = nbd_poll(h, timeoutMilliseconds)
        if rc < 0 { throw .last("poll") }
        return rc
    }
}
