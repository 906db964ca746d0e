import HTTPTypes
import M3Search
import NIOCore
import NIOHTTP1
import NIOHTTPTypes

/// Answers a request NIO's HTTP/1 parser rejects with the API's JSON error, then closes.
///
/// Hummingbird answers a parse error with an empty 400, breaking the API's promise of
/// `{"error": …}` for every error. The commonest cause is a request line or headers over
/// the decoder's 80 KiB limit, such as a DELETE of a 100 KB id (found by schemathesis).
/// The error is answered here and not passed on, so Hummingbird's empty answer never
/// follows. Placed after the HTTP/1 codec, it writes response parts.
final class ParseErrorResponder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundOut = HTTPResponsePart

    private var answered = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !answered { context.fireChannelRead(data) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parseError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        guard !answered else { return }
        answered = true
        let message = parseError == .headerOverflow
            ? "the request line and headers are larger than the server accepts (80 KiB); a document id that long cannot be sent in a path"
            : "the request is not valid HTTP/1.1 (\(parseError))"
        var out = JSONWriter(reserving: message.utf8.count + 16)
        out.raw("{\"error\":"); out.string(message); out.raw("}")
        let body = ByteBuffer(bytes: out.bytes)
        let head = HTTPResponse(status: .badRequest, headerFields: [
            .contentType: "application/json", .contentLength: String(body.readableBytes), .connection: "close",
        ])
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            loopBound.value.close(promise: nil)
        }
    }
}
