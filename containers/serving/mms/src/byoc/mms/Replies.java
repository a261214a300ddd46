package byoc.mms;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.amazonaws.ml.mms.util.NettyUtils;
import io.netty.buffer.Unpooled;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.http.DefaultFullHttpResponse;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpHeaderValues;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpUtil;
import io.netty.handler.codec.http.HttpVersion;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;

/** Our answers: JSON, errors as {"error": ..., "status": ...} like the Python handler's. */
public final class Replies {

    private static final Gson GSON = new GsonBuilder().disableHtmlEscaping().create();

    private Replies() {}

    public static String errorBody(int status, String message) {
        Map<String, Object> body = new LinkedHashMap<>();
        body.put("error", message);
        body.put("status", status);
        return GSON.toJson(body);
    }

    public static FullHttpResponse response(int status, String json) {
        FullHttpResponse response = new DefaultFullHttpResponse(HttpVersion.HTTP_1_1,
                HttpResponseStatus.valueOf(status),
                Unpooled.copiedBuffer(json + "\n", StandardCharsets.UTF_8));
        response.headers().set(HttpHeaderNames.CONTENT_TYPE, HttpHeaderValues.APPLICATION_JSON);
        HttpUtil.setContentLength(response, response.content().readableBytes());
        return response;
    }

    /** Through MMS's own sender: access log, request id, metrics; it closes after an error. */
    public static void send(ChannelHandlerContext ctx, int status, String json) {
        NettyUtils.sendHttpResponse(ctx, response(status, json), true);
    }

    public static void json(ChannelHandlerContext ctx, int status, Object value) {
        send(ctx, status, GSON.toJson(value));
    }

    public static void error(ChannelHandlerContext ctx, int status, String message) {
        send(ctx, status, errorBody(status, message));
    }

    /** Written from a handler ahead of MMS's request handling (no access-log session yet). */
    public static void errorDirect(ChannelHandlerContext ctx, int status, String message, boolean close) {
        FullHttpResponse response = response(status, errorBody(status, message));
        response.headers().set(HttpHeaderNames.CONNECTION,
                close ? HttpHeaderValues.CLOSE : HttpHeaderValues.KEEP_ALIVE);
        if (close) {
            ctx.writeAndFlush(response).addListener(ChannelFutureListener.CLOSE);
        } else {
            ctx.writeAndFlush(response);
        }
    }
}
