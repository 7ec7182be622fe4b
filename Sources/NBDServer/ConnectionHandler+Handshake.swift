import Logging
import NBDProtocol
import NIOCore
import NIOSSL

/// The handshake phase: bytes go through ``NBDServerHandshake`` and its actions
/// are carried out here (proto.md "Handshake").
extension NBDConnectionHandler {
    func startHandshake(_ context: ChannelHandlerContext) {
        logger[metadataKey: "peer"] = "\(context.remoteAddress.map { "\($0)" } ?? "unix")"
        let count = server.connectionCount.add(1, ordering: .relaxed).newValue
        let b = bound
        registration = server.registry.add { b.eventLoop.execute { b.value.beginShutdown() } }
        if count > server.limits.maximumConnections || server.shuttingDown.load(ordering: .relaxed) {
            // Refuse clearly: the greeting, then every option gets ERR_SHUTDOWN/
            // ERR_POLICY-style replies from a machine that is shutting down.
            logger.warning(
                "refusing connection: \(count) connections exceed --max-connections \(server.limits.maximumConnections)"
            )
            handshake.beginShutdown()
            shutdownRequested = true
        }
        context.writeAndFlush(wrapOutboundOut(handshake.greeting), promise: nil)
        let timeout = TimeAmount.seconds(server.limits.handshakeTimeoutSeconds)
        handshakeTimer = context.eventLoop.scheduleTask(in: timeout) {
            let h = b.value
            guard h.phase == .handshake else { return }
            h.logger.info("handshake timed out after \(h.server.limits.handshakeTimeoutSeconds) s; closing")
            h.close()
        }
    }

    func runHandshake() {
        guard var buffer = handshakeBuffer else { return }
        let actions = handshake.process(&buffer)
        // Drop what was consumed, so skipped option data is never kept.
        if buffer.readableBytes == 0 {
            handshakeBuffer = nil
        } else {
            buffer.discardReadBytes()
            handshakeBuffer = buffer
        }
        for action in actions {
            switch action {
            case .send(let b):
                context.write(wrapOutboundOut(b), promise: nil)
            case .close(let reason):
                logger.info("closing during handshake: \(reason)")
                context.flush()
                close()
                return
            case .startTLS:
                // The ACK went out in plain text; everything after it is TLS.
                context.flush()
                startTLS()
                return
            case .enterTransmission(let selection):
                context.flush()
                guard let export = server.export(named: selection.export.name) else {
                    logger.error("handshake chose unknown export '\(selection.export.name)'")
                    close()
                    return
                }
                handshakeTimer?.cancel()
                handshakeTimer = nil
                enterTransmission(export, selection)
                // Bytes that followed the handshake in the same read are requests.
                let rest = handshakeBuffer
                handshakeBuffer = nil
                if let rest, rest.readableBytes > 0 { decode(rest) }
                return
            }
        }
        context.flush()
    }

    /// Puts a `NIOSSLServerHandler` at the front of the pipeline, below this
    /// handler, and goes on negotiating over TLS (proto.md, "TLS support",
    /// FORCEDTLS mode: after `NBD_REP_ACK` "the server MUST be prepared for a TLS
    /// handshake, and all further data MUST be sent and received over TLS").
    /// A failed TLS handshake ends in ``errorCaught(context:error:)``, which
    /// closes this connection only.
    private func startTLS() {
        guard let tls = server.tls else {
            logger.error("handshake started TLS on a server without TLS credentials")
            close()
            return
        }
        do {
            try context.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls), position: .first)
        } catch {
            logger.warning("cannot start TLS: \(error)")
            close()
            return
        }
        handshake.tlsStarted()
        tlsState = .handshaking
        logger.debug("NBD_OPT_STARTTLS acknowledged; TLS handshake")
        // Bytes that followed STARTTLS in the same read are the client's first
        // TLS record: they go through the new handler.
        let rest = handshakeBuffer
        handshakeBuffer = nil
        if let rest, rest.readableBytes > 0 {
            context.pipeline.syncOperations.fireChannelRead(NIOAny(rest))
        }
    }
}
