import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// `--metrics HOST:PORT`: an HTTP/1.1 server with one resource, `GET /metrics`
/// (Prometheus text format from ``ServerMetrics/scrape()``); any other path
/// is 404, any other method on `/metrics` 405. It runs on an event loop of its
/// own, so a scrape never delays NBD requests' loops.
public final class MetricsEndpoint: Sendable {
    public let metrics: ServerMetrics
    /// The address bound (the port resolved when 0 was asked).
    public let boundAddress: MetricsAddress
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel

    /// Binds `address`; throws ``MetricsError/cannotListen(address:reason:)``.
    public init(address: MetricsAddress, metrics: ServerMetrics, logger: Logger) throws(MetricsError) {
        self.metrics = metrics
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(metrics: metrics, logger: logger))
                }
            }
        do {
            channel = try bootstrap.bind(host: address.host, port: address.port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw .cannotListen(address: address.description, reason: "\(error)")
        }
        self.group = group
        boundAddress = MetricsAddress(host: address.host, port: channel.localAddress?.port ?? address.port)
    }

    /// Stops listening and closes open scrape connections.
    public func close() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

/// Answers one HTTP connection's requests in order (keep-alive as the client asks).
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let metrics: ServerMetrics
    let logger: Logger
    private var head: HTTPRequestHead?

    init(metrics: ServerMetrics, logger: Logger) {
        self.metrics = metrics
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
        case .body:
            break
        case .end:
            guard let h = head else { return }
            head = nil
            respond(to: h, context: context)
        }
    }

    private func respond(to request: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = request.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        var headers = HTTPHeaders()
        let status: HTTPResponseStatus
        let body: String
        if path != "/metrics" {
            (status, body) = (.notFound, "not found: the metrics are at /metrics\n")
        } else if request.method != .GET {
            (status, body) = (.methodNotAllowed, "method not allowed: GET only\n")
            headers.add(name: "Allow", value: "GET")
        } else {
            (status, body) = (.ok, metrics.scrape())
        }
        let contentType = status == .ok ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8"
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: "\(body.utf8.count)")
        if !request.isKeepAlive { headers.add(name: "Connection", value: "close") }
        var response = HTTPResponseHead(version: request.version, status: status, headers: headers)
        response.headers = headers
        context.write(wrapOutboundOut(.head(response)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        if request.isKeepAlive {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("metrics connection error: \(error)")
        context.close(promise: nil)
    }
}

extension MetricsEndpoint {
    /// The port `nvme-nbd top` reads when given none (`127.0.0.1:9810`).
    public static let defaultAddress = MetricsAddress(host: "127.0.0.1", port: 9810)
}
