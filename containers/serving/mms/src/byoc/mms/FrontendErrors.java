package byoc.mms;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.netty.buffer.Unpooled;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelOutboundHandlerAdapter;
import io.netty.channel.ChannelPromise;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpUtil;
import java.nio.charset.StandardCharsets;

/**
 * MMS answers some failures itself, as {"code": 500, "type": "InternalServerException",
 * "message": "Worker died."}; clients get them in our form instead, {"error": ..., "status": ...},
 * with a message that says what happened. Our own answers and the model's pass unchanged.
 */
final class FrontendErrors extends ChannelOutboundHandlerAdapter {

    @Override
    public void write(ChannelHandlerContext ctx, Object msg, ChannelPromise promise) throws Exception {
        if (msg instanceof FullHttpResponse && ((FullHttpResponse) msg).status().code() >= 500) {
            msg = rewrite((FullHttpResponse) msg);
        }
        ctx.write(msg, promise);
    }

    private static FullHttpResponse rewrite(FullHttpResponse response) {
        JsonObject mms = parse(response.content().toString(StandardCharsets.UTF_8));
        if (mms == null || !mms.has("type") || !mms.has("message") || mms.has("error")) {
            return response;
        }
        int status = response.status().code();
        String message = mms.get("message").getAsString();
        String said = "Worker died.".equals(message)
                ? "The model's worker stopped while answering this request; it is being restarted."
                : "The model server could not answer: " + message;
        FullHttpResponse ours = response.replace(Unpooled.copiedBuffer(Replies.errorBody(status, said) + "\n",
                StandardCharsets.UTF_8));
        response.release();
        HttpUtil.setContentLength(ours, ours.content().readableBytes());
        return ours;
    }

    private static JsonObject parse(String text) {
        try {
            JsonElement element = JsonParser.parseString(text);
            return element.isJsonObject() ? element.getAsJsonObject() : null;
        } catch (RuntimeException notJson) {
            return null;
        }
    }
}
