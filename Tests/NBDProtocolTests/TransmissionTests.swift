import NBDProtocol
import NIOCore
import TestSupport
import Testing

/// The transmission phase as a state machine, driven from bytes (requests
/// encoded on the wire and decoded by ``NBDRequestDecoder``), no sockets.
@Suite("NBD transmission state machine")
struct TransmissionTests {
    /// A fake world: writability, server shutdown and a memory budget.
    struct World: NBDTransmissionEnvironment {
        var isWritable = true
        var serverShuttingDown = false
        var budget = Int.max
        var reserved = 0
        mutating func reserve(_ bytes: Int) -> Bool {
            guard bytes <= budget - reserved else { return false }
            reserved += bytes
            return true
        }
    }

    /// The machine, its world, and what it asked for so far.
    struct Harness {
        var machine: NBDTransmission
        var world = World()
        var decoder = NBDRequestDecoder(maximumPayload: 1 << 20)
        var actions: [NBDTransmission.Action] = []
        /// Cookies executed, in order, with their cost.
        var executed: [(UInt64, Int)] = []
        var rejected: [(UInt64, NBDErrno)] = []
        var paused = false
        var closed = false

        init(maxRequests: Int = 8, maxBytes: Int = 1 << 30, size: UInt64 = 1 << 30, readOnly: Bool = false) {
            machine = NBDTransmission(
                limits: NBDRequestLimits(
                    exportSize: size, readOnly: readOnly, structuredReplies: true,
                    metaContextNegotiated: true, maximumPayload: 1 << 20),
                maximumInFlightRequests: maxRequests, maximumInFlightBytes: maxBytes)
        }

        /// Feeds the wire bytes of `requests` (writes carry `length` payload bytes).
        mutating func send(_ requests: [NBDRequest]) throws {
            var bytes = ByteBuffer()
            for r in requests {
                bytes.writeNBDRequest(r)
                if r.type == .write { bytes.writeRepeatingByte(0xAB, count: Int(r.length)) }
            }
            while let message = try decoder.decode(buffer: &bytes) {
                machine.receive(message, &world, into: &actions)
                take()
            }
        }

        mutating func complete(cost: Int) {
            machine.completed(cost: cost, &world, into: &actions)
            take()
        }

        mutating func changed() {
            machine.conditionsChanged(&world, into: &actions)
            take()
        }

        mutating func take() {
            for a in actions {
                switch a {
                case .execute(let r, _, let cost): executed.append((r.cookie, cost))
                case .reject(let cookie, let why): rejected.append((cookie, why.errno))
                case .pauseReading: paused = true
                case .resumeReading: paused = false
                case .close: closed = true
                }
            }
            actions.removeAll(keepingCapacity: true)
        }
    }

    static func read(_ cookie: UInt64, _ offset: UInt64 = 0, _ length: UInt32 = 4096) -> NBDRequest {
        NBDRequest(type: .read, cookie: cookie, offset: offset, length: length)
    }
    static func write(_ cookie: UInt64, _ length: UInt32 = 4096) -> NBDRequest {
        NBDRequest(type: .write, cookie: cookie, offset: 0, length: length)
    }

    @Test("requests execute in order, each with its cost")
    func executesInOrder() throws {
        var h = Harness()
        try h.send([Self.read(1), Self.write(2, 512), NBDRequest(type: .flush, cookie: 3, offset: 0, length: 0)])
        #expect(h.executed.map(\.0) == [1, 2, 3])
        #expect(h.executed.map(\.1) == [4096, 512, 0])
        #expect(h.machine.inFlight == 3 && h.machine.inFlightBytes == 4608)
        #expect(!h.paused)
    }

    @Test(
        "past the request limit, requests wait and reading pauses; completions start them again in order",
        arguments: [1, 2, 5])
    func requestLimit(limit: Int) throws {
        var h = Harness(maxRequests: limit)
        try h.send((1...10).map { Self.read(UInt64($0)) })
        #expect(h.executed.map(\.0) == (1...UInt64(limit)).map { $0 })
        #expect(h.machine.deferredCount == 10 - limit)
        #expect(h.paused)
        #expect(!h.machine.wantsToRead(isWritable: true))
        for _ in 0..<(10 - limit) { h.complete(cost: 4096) }
        #expect(h.executed.map(\.0) == (1...10).map { UInt64($0) })
        for _ in 0..<limit { h.complete(cost: 4096) }
        #expect(!h.paused && h.machine.inFlight == 0)
    }

    @Test("past the byte limit requests wait")
    func byteLimit() throws {
        var h = Harness(maxBytes: 10_000)
        try h.send([Self.read(1, 0, 8192), Self.read(2, 0, 8192), Self.read(3, 0, 8192)])
        #expect(h.executed.map(\.0) == [1, 2], "the limit is checked before each start")
        h.complete(cost: 8192)
        #expect(h.executed.map(\.0) == [1, 2, 3])
    }

    @Test("an unwritable channel holds requests until it drains")
    func writability() throws {
        var h = Harness()
        h.world.isWritable = false
        try h.send([Self.read(1), Self.read(2)])
        #expect(h.executed.isEmpty && h.paused)
        h.world.isWritable = true
        h.changed()
        #expect(h.executed.map(\.0) == [1, 2] && !h.paused)
    }

    @Test("the server-wide budget: a request waits for room, none fails, order is kept")
    func budget() throws {
        var h = Harness()
        h.world.budget = 10_000
        try h.send([
            Self.read(1, 0, 8192), Self.read(2, 0, 8192), NBDRequest(type: .flush, cookie: 3, offset: 0, length: 0),
        ])
        #expect(h.executed.map(\.0) == [1], "the second read does not fit; the flush waits behind it")
        #expect(h.rejected.isEmpty)
        h.world.reserved -= 8192  // its reply was written
        h.complete(cost: 8192)
        #expect(h.executed.map(\.0) == [1, 2, 3])
    }

    @Test("NBD_CMD_DISC: nothing after it runs; the connection closes once idle")
    func disconnect() throws {
        var h = Harness()
        try h.send([Self.read(1), NBDRequest(type: .disconnect, cookie: 2, offset: 0, length: 0), Self.read(3)])
        #expect(h.executed.map(\.0) == [1])
        #expect(!h.closed, "a request is still in flight")
        h.complete(cost: 4096)
        #expect(h.closed)
        #expect(h.rejected.isEmpty, "no reply to anything after DISC")
    }

    @Test("shutdown with requests in flight: they finish, new ones get ESHUTDOWN, close after DISC or the linger")
    func shutdown() throws {
        for endWithDisc in [true, false] {
            var h = Harness()
            try h.send([Self.read(1), Self.read(2)])
            h.machine.beginShutdown(&h.world, into: &h.actions)
            h.take()
            #expect(h.machine.state == .draining)
            try h.send([Self.read(3)])
            #expect(h.rejected.map(\.0) == [3] && h.rejected.first?.1 == .eshutdown)
            h.complete(cost: 4096)
            h.complete(cost: 4096)
            #expect(h.machine.state == .lingering && !h.closed, "idle, waiting for DISC")
            try h.send([Self.read(4)])
            #expect(h.rejected.map(\.0) == [3, 4])
            if endWithDisc {
                try h.send([NBDRequest(type: .disconnect, cookie: 5, offset: 0, length: 0)])
            } else {
                h.machine.lingerExpired(&h.world, into: &h.actions)
                h.take()
            }
            #expect(h.closed && h.machine.state == .closed)
        }
    }

    @Test("requests waiting at shutdown are answered ESHUTDOWN")
    func shutdownAnswersWaitingRequests() throws {
        var h = Harness(maxRequests: 1)
        try h.send([Self.read(1), Self.read(2), Self.read(3)])
        h.machine.beginShutdown(&h.world, into: &h.actions)
        h.take()
        #expect(Set(h.rejected.map(\.0)) == [2, 3] && h.rejected.allSatisfy { $0.1 == .eshutdown })
        h.machine.lingerExpired(&h.world, into: &h.actions)
        h.take()
        #expect(!h.closed, "request 1 is still in flight")
        h.complete(cost: 4096)
        #expect(h.closed)
    }

    @Test(
        "invalid requests are rejected with their errno; the connection goes on",
        arguments: [
            (NBDRequest(flags: [.fastZero], type: .read, cookie: 1, offset: 0, length: 1), NBDErrno.einval),
            (NBDRequest(type: .read, cookie: 1, offset: 1 << 30, length: 1), .einval),
            (NBDRequest(type: .write, cookie: 1, offset: (1 << 30) - 1, length: 2), .enospc),
            (NBDRequest(type: .trim, cookie: 1, offset: 0, length: 1), .eperm),
            (NBDRequest(type: .blockStatus, cookie: 1, offset: 0, length: 0), .einval),
            (NBDRequest(type: .read, cookie: 1, offset: 0, length: (1 << 20) + 1), .eoverflow),
        ])
    func rejections(request: NBDRequest, errno: NBDErrno) throws {
        var h = Harness(readOnly: request.type == .trim)
        try h.send([request, Self.read(9)])
        #expect(h.rejected.count == 1 && h.rejected.first?.1 == errno, "\(h.rejected)")
        #expect(h.executed.map(\.0) == [9])
    }

    @Test("an over-long write payload is refused with EINVAL and skipped; the next request runs")
    func oversizedPayload() throws {
        var h = Harness()
        var bytes = ByteBuffer()
        bytes.writeNBDRequest(NBDRequest(type: .write, cookie: 1, offset: 0, length: (1 << 20) + 1))
        bytes.writeRepeatingByte(0, count: (1 << 20) + 1)
        bytes.writeNBDRequest(Self.read(2))
        while let m = try h.decoder.decode(buffer: &bytes) {
            h.machine.receive(m, &h.world, into: &h.actions)
            h.take()
        }
        #expect(h.rejected.map(\.0) == [1] && h.rejected[0].1 == .einval)
        #expect(h.executed.map(\.0) == [2])
    }

    @Test("random interleavings: the limits hold, every request gets one outcome in order", arguments: [1, 2, 3, 4, 5])
    func randomInterleavings(seed fixed: UInt64) throws {
        let seed = TestSeed.fixed(fixed)
        var rng = seed.generator()
        var h = Harness(maxRequests: 4, maxBytes: 20_000)
        h.world.budget = 30_000
        var next: UInt64 = 1
        var seen = 0
        var outstanding: [Int] = []  // costs of executed requests not yet completed, oldest first
        func absorb() {
            while seen < h.executed.count {
                outstanding.append(h.executed[seen].1)
                seen += 1
            }
        }
        func completeOne() {
            let cost = outstanding.removeFirst()
            h.world.reserved -= cost
            h.complete(cost: cost)
        }
        for step in 0..<2_000 {
            switch rng.next() % 5 {
            case 0, 1:
                let length = UInt32(512 * (1 + rng.next() % 16))
                try h.send([rng.next() % 2 == 0 ? Self.read(next, 0, length) : Self.write(next, length)])
                next += 1
            case 2:
                h.world.isWritable.toggle()
                h.changed()
            default:
                if !outstanding.isEmpty { completeOne() }
            }
            absorb()
            #expect(h.machine.inFlight <= 4, "\(seed), step \(step)")
            #expect(h.machine.inFlight == outstanding.count, "\(seed), step \(step)")
            #expect(h.world.reserved <= h.world.budget, "\(seed), step \(step)")
        }
        h.world.isWritable = true
        h.changed()
        absorb()
        while !outstanding.isEmpty {
            completeOne()
            absorb()
        }
        #expect(h.machine.deferredCount == 0, "\(seed)")
        let cookies = h.executed.map(\.0)
        #expect(cookies == cookies.sorted(), "executed out of order (\(seed))")
        #expect(cookies.count + h.rejected.count == Int(next - 1), "every request once (\(seed))")
    }
}
