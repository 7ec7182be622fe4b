import Foundation
import NBDProtocol
import NIOCore
import TestSupport

/// A blocking POSIX-socket NBD client built on NBDProtocol's client-side
/// encoders and decoders, for what libnbd will not send: unknown commands and
/// flags, bad magic, oversized payloads, requests after `NBD_CMD_DISC`, and
/// option-haggling edge cases. Every receive has a deadline, so a server that
/// fails to answer makes the test fail instead of hang. `@unchecked Sendable`:
/// one thread at a time uses it (a test may hand it to a reader thread).
final class RawClient: @unchecked Sendable {
    struct Closed: Error, CustomStringConvertible {
        var description: String { "connection closed by the server" }
    }
    struct TimedOut: Error, CustomStringConvertible {
        var what: String
        var description: String { "timed out waiting for \(what)" }
    }

    private(set) var fd: Int32
    private var inbound = ByteBuffer()
    var timeoutMilliseconds: Int32 = 10_000
    /// Read lengths of requests in flight, so simple replies can be framed.
    private var readLengths: [UInt64: Int] = [:]
    private(set) var structuredReplies = false

    init(tcpPort: Int) throws {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(tcpPort).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        fd = try Self.connectedSocket(to: addr, family: AF_INET, "127.0.0.1:\(tcpPort)")
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    init(unixPath: String) throws {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(unixPath.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw FixtureError("socket path too long")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        fd = try Self.connectedSocket(to: addr, family: AF_UNIX, unixPath)
    }

    /// A stream socket of `family` connected to `address` (a `sockaddr_in` or
    /// `sockaddr_un`), for both initializers; on failure the socket is closed and
    /// the error names `peer`.
    private static func connectedSocket<Address>(to address: Address, family: Int32, _ peer: String) throws -> Int32 {
        let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw FixtureError("socket: errno \(errno)") }
        var address = address
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<Address>.size))
            }
        }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw FixtureError("connect \(peer): errno \(e)")
        }
        return fd
    }

    deinit { if fd >= 0 { close(fd) } }

    // MARK: Bytes

    func send(_ buffer: ByteBuffer) throws {
        var b = buffer
        while b.readableBytes > 0 {
            let n = b.withUnsafeReadableBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FixtureError("send: errno \(errno)")
            }
            b.moveReaderIndex(forwardBy: n)
        }
    }

    func send(_ bytes: [UInt8]) throws { try send(ByteBuffer(bytes: bytes)) }

    /// Reads whatever arrives within the deadline into `inbound`; throws
    /// ``Closed`` on EOF (or a reset) and ``TimedOut`` when nothing came.
    private func receiveMore(_ what: String) throws {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let r = Glibc.poll(&p, 1, timeoutMilliseconds)
        if r == 0 { throw TimedOut(what: what) }
        if r < 0 { throw FixtureError("poll: errno \(errno)") }
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n == 0 { throw Closed() }
        if n < 0 {
            if errno == ECONNRESET { throw Closed() }
            throw FixtureError("recv: errno \(errno)")
        }
        inbound.writeBytes(chunk[0..<n])
    }

    /// Whether the server closes the connection within `milliseconds` (bytes
    /// arriving meanwhile are discarded).
    func waitForClose(milliseconds: Int32 = 5_000) -> Bool {
        let saved = timeoutMilliseconds
        timeoutMilliseconds = Int32(WaitScale.seconds(Double(milliseconds)))
        defer { timeoutMilliseconds = saved }
        while true {
            do { try receiveMore("close") } catch is Closed { return true } catch { return false }
            inbound.clear()
        }
    }

    /// Whether the server closes the connection, sending nothing before.
    func closesWithoutReply(milliseconds: Int32 = 5_000) -> Bool {
        let saved = timeoutMilliseconds
        timeoutMilliseconds = Int32(WaitScale.seconds(Double(milliseconds)))
        defer { timeoutMilliseconds = saved }
        do { try receiveMore("close") } catch is Closed { return inbound.readableBytes == 0 } catch { return false }
        return false
    }

    // MARK: Handshake

    func readGreeting() throws -> NBDServerGreeting {
        while true {
            if let g = try inbound.readNBDServerGreeting() { return g }
            try receiveMore("greeting")
        }
    }

    func sendClientFlags(_ flags: NBDClientFlags = [.fixedNewstyle, .noZeroes]) throws {
        var b = ByteBuffer()
        b.writeNBDClientFlags(flags)
        try send(b)
    }

    /// Reads the greeting and sends the client flags: the option phase begins.
    func startOptions(_ flags: NBDClientFlags = [.fixedNewstyle, .noZeroes]) throws {
        _ = try readGreeting()
        try sendClientFlags(flags)
    }

    func sendOption(_ option: NBDOptionRequest) throws {
        var b = ByteBuffer()
        b.writeNBDOption(option)
        try send(b)
    }

    func readOptionReply() throws -> NBDOptionReply {
        while true {
            if let r = try inbound.readNBDOptionReply() { return r }
            try receiveMore("option reply")
        }
    }

    /// Option replies up to and including the first ACK or error.
    func readOptionReplies() throws -> [NBDOptionReply] {
        var out: [NBDOptionReply] = []
        while true {
            let r = try readOptionReply()
            out.append(r)
            if r.type == .ack || r.type.isError { return out }
        }
    }

    /// The 8-byte size, 2-byte flags (and no zeroes) answer to `NBD_OPT_EXPORT_NAME`.
    func readExportNameReply() throws -> (size: UInt64, flags: NBDTransmissionFlags) {
        while true {
            if let (size, flags) = inbound.readMultipleIntegers(as: (UInt64, UInt16).self) {
                return (size, NBDTransmissionFlags(rawValue: flags))
            }
            try receiveMore("export name reply")
        }
    }

    /// A complete fixed-newstyle handshake ending in `NBD_OPT_GO`: greeting,
    /// flags, optional STRUCTURED_REPLY and SET_META_CONTEXT base:allocation.
    @discardableResult
    func handshake(export: String = "", structured: Bool = true, metaContext: Bool = true) throws
        -> (size: UInt64, flags: NBDTransmissionFlags)
    {
        try startOptions()
        if structured {
            try sendOption(.structuredReply)
            let r = try readOptionReplies()
            guard r.last?.type == .ack else { throw FixtureError("STRUCTURED_REPLY: \(r)") }
            structuredReplies = true
        }
        if structured && metaContext {
            try sendOption(.setMetaContext(exportName: export, queries: [NBDAllocationState.contextName]))
            let r = try readOptionReplies()
            guard r.last?.type == .ack, r.contains(where: { $0.metaContext?.name == NBDAllocationState.contextName })
            else {
                throw FixtureError("SET_META_CONTEXT: \(r)")
            }
        }
        try sendOption(.go(exportName: export))
        let replies = try readOptionReplies()
        guard replies.last?.type == .ack else { throw FixtureError("GO: \(replies.map { $0.type })") }
        for r in replies {
            if case .export(let size, let flags)? = r.info { return (size, flags) }
        }
        throw FixtureError("GO without NBD_INFO_EXPORT")
    }

    // MARK: Transmission

    /// Encodes a request header (plus `payload` for writes) without sending it.
    func encode(_ request: NBDRequest, payload: [UInt8]? = nil, into b: inout ByteBuffer) {
        b.writeNBDRequest(request)
        if let payload { b.writeBytes(payload) }
        if request.type == .read { readLengths[request.cookie] = Int(request.length) }
    }

    func sendRequest(_ request: NBDRequest, payload: [UInt8]? = nil) throws {
        var b = ByteBuffer()
        encode(request, payload: payload, into: &b)
        try send(b)
    }

    /// The next reply message (a simple reply or one structured chunk).
    func readReplyMessage() throws -> NBDReply {
        let lengths = readLengths
        while true {
            // A fresh decoder per attempt over a copy of everything received: a
            // decoder that saw only part of a simple reply's data keeps its header
            // as pending state, which must not meet the header a second time.
            var decoder = NBDReplyDecoder(maximumPayload: UInt32(64 << 20)) { lengths[$0] ?? 0 }
            var view = inbound
            if let m = try decoder.decode(buffer: &view) {
                inbound = view
                return m
            }
            try receiveMore("reply")
        }
    }

    /// A whole reply: every chunk up to DONE (or the one simple reply).
    struct Reply {
        var cookie: UInt64
        var error: NBDErrno = .success
        var errorMessage = ""
        var data: [UInt8] = []
        var chunks: [NBDStructuredReplyChunk] = []
        var simple = false
    }

    func readReply() throws -> Reply {
        let first = try readReplyMessage()
        var reply = Reply(cookie: first.cookie)
        var message = first
        while true {
            switch message {
            case .simple(let s):
                reply.simple = true
                reply.error = s.error
                if var d = s.data { reply.data = d.readBytes(length: d.readableBytes) ?? [] }
                readLengths[s.cookie] = nil
                return reply
            case .structured(let c):
                guard c.cookie == reply.cookie else {
                    throw FixtureError(
                        "chunks of cookies \(reply.cookie) and \(c.cookie) interleaved (test expects one at a time)")
                }
                reply.chunks.append(c)
                switch c.payload {
                case .error(let e, let m), .errorOffset(let e, let m, _):
                    reply.error = e
                    reply.errorMessage = m
                default: break
                }
                if c.isDone {
                    readLengths[c.cookie] = nil
                    return reply
                }
            }
            message = try readReplyMessage()
        }
    }

    /// Sends one request and reads its whole reply.
    func roundTrip(_ request: NBDRequest, payload: [UInt8]? = nil) throws -> Reply {
        try sendRequest(request, payload: payload)
        let r = try readReply()
        guard r.cookie == request.cookie else {
            throw FixtureError("reply for cookie \(r.cookie), expected \(request.cookie)")
        }
        return r
    }
}
