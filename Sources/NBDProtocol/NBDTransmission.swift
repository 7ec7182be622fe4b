import NIOCore

/// What the transmission phase needs to know from outside at each step: the
/// conditions the machine cannot see itself.
public protocol NBDTransmissionEnvironment {
    /// Whether the connection's outbound buffer takes more (NIO writability):
    /// replies that are not leaving stop the reading.
    var isWritable: Bool { get }
    /// Whether the whole server is shutting down (set before this connection
    /// hears of it).
    var serverShuttingDown: Bool { get }
    /// Reserves `bytes` of the server-wide memory budget for a request about to
    /// start; `false` when the budget has no room for it (the request waits).
    mutating func reserve(_ bytes: Int) -> Bool
}

/// The transmission phase of one NBD connection as a value-type state machine:
/// no sockets, no event loop, no NVMe. It consumes decoded requests
/// (``NBDRequestDecoder/Message``) and events — a request's work completed, the
/// channel became writable again, the memory budget freed, the server began
/// shutting down, the linger ended — and returns actions: execute a request,
/// reject one with an errno, pause or resume reading, close.
///
/// proto.md, "Transmission", "Request types", "Terminating the transmission
/// phase", "Error values". Rules (README, "The data path"):
/// - Requests are validated (``NBDRequestValidation``) before anything is done.
/// - Back-pressure: past ``maximumInFlightRequests`` requests or
///   ``maximumInFlightBytes`` payload bytes in flight, while the
///   channel is not writable, or when the server-wide budget refuses a request,
///   decoded requests wait in order (``deferredCount``) and reading pauses until
///   the limits allow again.
/// - Nothing sent after `NBD_CMD_DISC` is executed; the connection closes once
///   nothing is in flight.
/// - Server shutdown (``beginShutdown(_:into:)``): requests in flight finish,
///   every request read from then on is answered `ESHUTDOWN`, and the
///   connection closes once idle and either the client sent `NBD_CMD_DISC` or
///   the linger is over (``lingerExpired(_:into:)``).
/// - `NBD_CMD_WRITE` over the maximum payload, and `NBD_CMD_FLAG_PAYLOAD_LEN`
///   without extended headers, are answered `EINVAL`; the connection lives on.
///
/// Every call appends to `actions`, which the caller carries out in order and
/// then empties (a reused array: no allocation per request).
public struct NBDTransmission: Sendable {
    /// Where the connection is.
    public enum State: Hashable, Sendable {
        /// Serving requests.
        case active
        /// The server is shutting down: requests in flight finish, new ones are
        /// answered `ESHUTDOWN`.
        case draining
        /// Shutting down and idle: waiting for the client's `NBD_CMD_DISC` until
        /// the linger is over.
        case lingering
        /// Closing (replies already queued are still written) or closed.
        case closed
    }

    /// What the caller must do.
    public enum Action: Sendable {
        /// Carry out the request; call ``completed(cost:_:into:)`` with `cost`
        /// when its reply is queued.
        case execute(NBDRequest, payload: ByteBuffer?, cost: Int)
        /// Answer the request with an error now; nothing was started.
        case reject(cookie: UInt64, NBDRejection)
        /// Stop asking the channel for bytes.
        case pauseReading
        /// Ask for bytes again.
        case resumeReading
        /// Close once every reply queued so far has been written.
        case close
    }

    /// An error answer: the errno and a message for the client and the log.
    public typealias NBDRejection = NBDRequestRejection

    /// What a single request may ask (``NBDRequestValidation``).
    public let limits: NBDRequestLimits
    /// Back-pressure: requests in flight before reading pauses.
    public let maximumInFlightRequests: Int
    /// Back-pressure: bytes in flight (``cost(of:)``) before reading pauses.
    public let maximumInFlightBytes: Int
    public private(set) var state: State = .active
    /// Requests started and not yet completed.
    public private(set) var inFlight = 0
    /// Their cost (payload or read length) in bytes.
    public private(set) var inFlightBytes = 0
    private var deferred = CircularBuffer<(NBDRequest, ByteBuffer?)>()
    private var disconnectRequested = false
    private var lingerOver = false
    private var readingPaused = false

    public init(limits: NBDRequestLimits, maximumInFlightRequests: Int, maximumInFlightBytes: Int) {
        self.limits = limits
        self.maximumInFlightRequests = maximumInFlightRequests
        self.maximumInFlightBytes = maximumInFlightBytes
    }

    /// Requests decoded but waiting for the limits to allow them.
    public var deferredCount: Int { deferred.count }
    /// Whether the client sent `NBD_CMD_DISC`.
    public var isDisconnectRequested: Bool { disconnectRequested }

    /// The memory a request holds while in flight: its payload or its read data.
    public static func cost(of r: NBDRequest) -> Int {
        r.type == .write || r.type == .read ? Int(r.length) : 0
    }

    // MARK: Events

    /// A decoded unit of the client's stream.
    public mutating func receive<E: NBDTransmissionEnvironment>(
        _ message: NBDRequestDecoder.Message, _ env: inout E,
        into actions: inout [Action]
    ) {
        // proto.md: "A client MUST NOT send anything to the server after sending an
        // NBD_CMD_DISC"; whatever followed DISC in the same read is dropped.
        guard state != .closed, !disconnectRequested else { return }
        switch message {
        case .request(let request, let payload):
            // In order: behind anything already waiting, and through the same gate.
            deferred.append((request, payload))
            drainDeferred(&env, &actions)
        case .oversizedPayload(let request):
            actions.append(
                .reject(
                    cookie: request.cookie,
                    NBDRequestRejection(
                        .einval,
                        "write of \(request.length) bytes exceeds the maximum payload \(limits.maximumPayload)"
                    )))
        case .unexpectedPayloadLengthFlag(let request):
            actions.append(
                .reject(
                    cookie: request.cookie,
                    NBDRequestRejection(.einval, "NBD_CMD_FLAG_PAYLOAD_LEN without extended headers")))
        }
        updateReading(&env, &actions)
    }

    /// A request started with ``Action/execute(_:payload:cost:)`` is answered.
    public mutating func completed<E: NBDTransmissionEnvironment>(
        cost: Int, _ env: inout E, into actions: inout [Action]
    ) {
        inFlight -= 1
        inFlightBytes -= cost
        drainDeferred(&env, &actions)
        updateReading(&env, &actions)
        if disconnectRequested || state == .draining || state == .lingering { closeIfIdle(&actions) }
    }

    /// The channel became writable again, or the server-wide budget freed memory.
    public mutating func conditionsChanged<E: NBDTransmissionEnvironment>(_ env: inout E, into actions: inout [Action])
    {
        guard state != .closed else { return }
        drainDeferred(&env, &actions)
        updateReading(&env, &actions)
    }

    /// The server begins shutting down.
    public mutating func beginShutdown<E: NBDTransmissionEnvironment>(_ env: inout E, into actions: inout [Action]) {
        guard state == .active else { return }
        state = .draining
        closeIfIdle(&actions)
        updateReading(&env, &actions)
    }

    /// The shutdown linger is over: close as soon as idle, DISC or not.
    public mutating func lingerExpired<E: NBDTransmissionEnvironment>(_ env: inout E, into actions: inout [Action]) {
        lingerOver = true
        closeIfIdle(&actions)
        updateReading(&env, &actions)
    }

    /// Whether the channel should be asked for bytes now.
    public func wantsToRead(isWritable: Bool) -> Bool {
        guard state != .closed else { return false }
        return !(overLimits(isWritable) || !deferred.isEmpty || disconnectRequested)
    }

    // MARK: Rules

    private func overLimits(_ writable: Bool) -> Bool {
        inFlight >= maximumInFlightRequests || inFlightBytes >= maximumInFlightBytes
            || !writable
    }

    /// Starts waiting requests, in order, while the limits allow: each is
    /// answered at once (DISC, shutdown, invalid) or executed once the budget
    /// has room for it.
    private mutating func drainDeferred<E: NBDTransmissionEnvironment>(_ env: inout E, _ actions: inout [Action]) {
        while let (r, payload) = deferred.first, state != .closed, !overLimits(env.isWritable) {
            if disconnectRequested {
                // Nothing after NBD_CMD_DISC is executed (proto.md).
                deferred.removeAll()
                break
            }
            if r.type == .disconnect {
                deferred.removeFirst()
                disconnectRequested = true
                closeIfIdle(&actions)
                continue
            }
            if state != .active || env.serverShuttingDown {
                deferred.removeFirst()
                actions.append(.reject(cookie: r.cookie, NBDRequestRejection(.eshutdown, "server shutting down")))
                continue
            }
            if let rejection = NBDRequestValidation.validate(r, limits) {
                deferred.removeFirst()
                actions.append(.reject(cookie: r.cookie, rejection))
                continue
            }
            let cost = Self.cost(of: r)
            if cost > 0 && !env.reserve(cost) { break }
            deferred.removeFirst()
            inFlight += 1
            inFlightBytes += cost
            actions.append(.execute(r, payload: payload, cost: cost))
        }
    }

    private mutating func closeIfIdle(_ actions: inout [Action]) {
        guard state != .closed else { return }
        if state != .active {
            // Decoded but not started: answer ESHUTDOWN (a DISC among them counts).
            while let (r, _) = deferred.first {
                deferred.removeFirst()
                if r.type == .disconnect {
                    disconnectRequested = true
                    continue
                }
                actions.append(.reject(cookie: r.cookie, NBDRequestRejection(.eshutdown, "server shutting down")))
            }
        }
        guard inFlight == 0, deferred.isEmpty else { return }
        if state != .active && !disconnectRequested && !lingerOver {
            state = .lingering
            return
        }
        if state == .active && !disconnectRequested { return }
        state = .closed
        actions.append(.close)
    }

    private mutating func updateReading<E: NBDTransmissionEnvironment>(_ env: inout E, _ actions: inout [Action]) {
        let want = wantsToRead(isWritable: env.isWritable)
        if want && readingPaused {
            readingPaused = false
            actions.append(.resumeReading)
        } else if !want && !readingPaused && state != .closed {
            readingPaused = true
            actions.append(.pauseReading)
        }
    }
}
