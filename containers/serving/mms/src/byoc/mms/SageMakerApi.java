package byoc.mms;

import com.amazonaws.ml.mms.util.NettyUtils;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.SimpleChannelInboundHandler;
import io.netty.handler.codec.DecoderException;
import io.netty.handler.codec.http.FullHttpRequest;
import io.netty.handler.codec.http.HttpMethod;
import io.netty.handler.codec.http.QueryStringDecoder;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * SageMaker's routes on the serving port, and nothing else (no /predictions, /api-description,
 * management API or plugins):
 *
 * <pre>
 *   GET  /ping                    200 when the endpoint can answer, else 503
 *   GET  /execution-parameters    what a batch transform job should send (serve computes it)
 *   (HEAD for either: the same status and headers; HttpServerCodec leaves out the body)
 *   POST /invocations             the model (single-model endpoints)
 *   GET, POST /models             list, load          (multi-model endpoints: MultiModels)
 *   GET, DELETE /models/NAME      describe, unload
 *   POST /models/NAME/invoke      the model NAME
 * </pre>
 *
 * Anything else is a JSON 404 or 405; no request gets Java text.
 */
public final class SageMakerApi extends SimpleChannelInboundHandler<FullHttpRequest> {

    private static final Logger logger = LoggerFactory.getLogger(SageMakerApi.class);

    private final Settings settings;

    SageMakerApi(Settings settings) {
        this.settings = settings;
    }

    @Override
    protected void channelRead0(ChannelHandlerContext ctx, FullHttpRequest request) {
        NettyUtils.requestReceived(ctx.channel(), request); // MMS's access log and request id
        try {
            route(ctx, request);
        } catch (RuntimeException e) {
            logger.error("request failed in the frontend", e);
            Replies.error(ctx, 500, "The server failed on this request; the container log says why.");
        }
    }

    private void route(ChannelHandlerContext ctx, FullHttpRequest request) {
        if (!request.decoderResult().isSuccess() || request.protocolVersion().majorVersion() != 1) {
            Replies.error(ctx, 400, "The request is not valid HTTP/1.1: " + whyInvalid(request));
            return;
        }
        List<String> path;
        try {
            path = segments(request.uri());
        } catch (IllegalArgumentException e) { // Netty's decoder: "%zz", a lone "%", bad UTF-8
            Replies.error(ctx, 400, "The request's path is not valid: " + e.getMessage() + ".");
            return;
        }
        HttpMethod method = request.method();
        if (path.equals(List.of("ping"))) {
            if (allowed(ctx, method, "GET", "HEAD")) {
                Readiness.answer(ctx, settings);
            }
        } else if (path.equals(List.of("execution-parameters"))) {
            if (allowed(ctx, method, "GET", "HEAD")) {
                Replies.send(ctx, 200, settings.executionParameters);
            }
        } else if (path.equals(List.of("invocations")) && !settings.multiModel) {
            if (allowed(ctx, method, "POST")) {
                Invocations.dispatch(ctx, request, settings.modelName, false);
            }
        } else if (settings.multiModel && !path.isEmpty() && path.get(0).equals("models")) {
            MultiModels.route(ctx, request, path, settings);
        } else {
            Replies.error(ctx, 404, "No such resource: " + new QueryStringDecoder(request.uri()).rawPath()
                    + ". This endpoint answers GET /ping, GET /execution-parameters and " + (settings.multiModel
                    ? "SageMaker's multi-model API (GET, POST /models; GET, DELETE /models/NAME; "
                            + "POST /models/NAME/invoke)."
                    : "POST /invocations."));
        }
    }

    private static String whyInvalid(FullHttpRequest request) {
        String cause = request.decoderResult().isSuccess() ? ""
                : request.decoderResult().cause().getClass().getSimpleName();
        if (cause.contains("Line")) {
            return "its request line is longer than 4096 bytes.";
        }
        if (cause.contains("Header")) {
            return "its headers are longer than 8192 bytes.";
        }
        return request.decoderResult().isSuccess() ? "only HTTP/1.0 and 1.1 are served."
                : "it could not be parsed.";
    }

    /** The decoded path's segments: "/models/a/invoke" is [models, a, invoke]. */
    static List<String> segments(String uri) {
        String path = new QueryStringDecoder(uri).path();
        String[] parts = path.split("/", -1);
        return parts.length <= 1 ? List.of() : Arrays.asList(parts).subList(1, parts.length);
    }

    /** True when `method` is one of `allowed`; otherwise answers 405 naming them. */
    static boolean allowed(ChannelHandlerContext ctx, HttpMethod method, String... allowed) {
        if (Arrays.asList(allowed).contains(method.name())) {
            return true;
        }
        Replies.send(ctx, 405, Replies.errorBody(405, method.name() + " is not allowed here; use "
                + String.join(" or ", allowed) + "."));
        return false;
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
        logger.debug("connection closed after an error", cause);
        if (cause instanceof DecoderException && ctx.channel().isActive()) {
            // The codec threw mid-request (a chunk size of 2^31 or more overflows its parser): the
            // client is still owed an answer before the connection closes.
            Replies.errorDirect(ctx, 400, "The request is not valid HTTP/1.1: its body's framing could not"
                    + " be read.", true);
        } else {
            ctx.close();
        }
    }

    static Map<String, String> status(String text) {
        return Map.of("status", text);
    }
}
