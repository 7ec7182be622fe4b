import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// A small HTTP/1.1 client for one thing: `GET /metrics` from a
/// ``MetricsEndpoint`` (or any Prometheus exporter), one connection per fetch.
/// `nvme-nbd top` uses it.
public final class MetricsClient: Sendable {
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    public init() {}

    /// The body of `http://address/metrics` (or of `path`, asked with `method`:
    /// the tests' way to check other answers); throws ``MetricsError`` when the
    /// connection fails, the status is not 200 or no answer came in `timeoutSeconds`.
    public func fetch(
        _ address: MetricsAddress, path: String = "/metrics", method: String = "GET",
        timeoutSeconds: Int = 5
    ) throws(MetricsError) -> String {
        let loop = group.next()
        let promise = loop.makePromise(of: String.self)
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(.seconds(Int64(timeoutSeconds)))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(MetricsResponseHandler(promise: promise))
                }
            }
        let text = address.description
        bootstrap.connect(host: address.host, port: address.port).whenComplete { result in
            switch result {
            case .failure(let error):
                promise.fail(FetchFailure.connect(Self.reason(error)))
            case .success(let channel):
                var headers = HTTPHeaders()
                headers.add(name: "Host", value: text)
                headers.add(name: "Accept", value: "text/plain")
                headers.add(name: "Connection", value: "close")
                let head = HTTPRequestHead(
                    version: .http1_1, method: HTTPMethod(rawValue: method), uri: path,
                    headers: headers)
                channel.write(HTTPClientRequestPart.head(head), promise: nil)
                channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
                let timeout = loop.scheduleTask(in: .seconds(Int64(timeoutSeconds))) {
                    promise.fail(FetchFailure.timeout)
                    channel.close(promise: nil)
                }
                promise.futureResult.whenComplete { _ in
                    timeout.cancel()
                    channel.close(promise: nil)
                }
            }
        }
        do {
            return try promise.futureResult.wait()
        } catch FetchFailure.status(let status) {
            throw .httpStatus(address: text, status: status)
        } catch FetchFailure.timeout {
            throw .timedOut(address: text, seconds: timeoutSeconds)
        } catch FetchFailure.connect(let reason) {
            throw .connectionFailed(address: text, reason: reason)
        } catch {
            throw .connectionFailed(address: text, reason: "\(error)")
        }
    }

    /// What a connect failure says, without SwiftNIO's wrapping
    /// ("Connection refused (errno: 111)" rather than the list of attempts).
    static func reason(_ error: any Error) -> String {
        if let e = error as? NIOConnectionError {
            if let first = e.connectionErrors.first { return reason(first.error) }
            if let dns = e.dnsAError ?? e.dnsAAAAError { return "cannot resolve \(e.host): \(dns)" }
        }
        if let e = error as? IOError, let colon = e.description.range(of: ": ") {
            return String(e.description[colon.upperBound...]).replacingOccurrences(of: ") (errno", with: " (errno")
        }
        if case .connectTimeout? = error as? ChannelError { return "connect timed out" }
        return "\(error)"
    }

    /// Stops the client's event loop.
    public func close() {
        try? group.syncShutdownGracefully()
    }
}

enum FetchFailure: Error {
    case connect(String)
    case status(Int)
    case timeout
    case closedEarly
}

/// Collects one response; completes the promise at its end, or fails it.
final class MetricsResponseHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    let promise: EventLoopPromise<String>
    private var status = 0
    private var body: ByteBuffer?

    init(promise: EventLoopPromise<String>) { self.promise = promise }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
        case .body(var part):
            if body == nil { body = part } else { body!.writeBuffer(&part) }
        case .end:
            if status == 200 {
                promise.succeed(body.map { String(buffer: $0) } ?? "")
            } else {
                promise.fail(FetchFailure.status(status))
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(FetchFailure.closedEarly)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }
}
