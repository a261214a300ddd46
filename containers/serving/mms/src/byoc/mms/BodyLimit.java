package byoc.mms;

import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelPipeline;
import io.netty.handler.codec.http.HttpMessage;
import io.netty.handler.codec.http.HttpObjectAggregator;
import io.netty.handler.codec.http.HttpResponse;
import io.netty.handler.codec.http.HttpUtil;
import io.netty.util.ReferenceCountUtil;

/**
 * Netty's aggregator, answering a body over the limit with our JSON 413 and an expectation it
 * cannot meet with our JSON 417 (Netty's own have empty bodies). A Content-Length over the limit is refused before the body is read, a chunked body
 * as soon as it passes the limit; either way the rest of it is read and thrown away, so the client
 * can finish sending, read the answer and reuse the connection (closing at once would reset the
 * connection under a client still sending, which then never sees the answer).
 */
final class BodyLimit extends HttpObjectAggregator {

    BodyLimit(int maxBytes) {
        super(maxBytes);
    }

    private String tooLarge() {
        return "The request body is larger than " + maxContentLength() + " bytes, the most this endpoint"
                + " accepts (BYOC_MAX_PAYLOAD_MB, or a transform job's MaxPayloadInMB if larger).";
    }

    @Override
    protected void handleOversizedMessage(ChannelHandlerContext ctx, HttpMessage oversized) {
        Replies.errorDirect(ctx, 413, tooLarge(), !HttpUtil.isKeepAlive(oversized));
    }

    @Override
    protected Object newContinueResponse(HttpMessage start, int maxContentLength, ChannelPipeline pipeline) {
        Object answer = super.newContinueResponse(start, maxContentLength, pipeline);
        int status = answer instanceof HttpResponse ? ((HttpResponse) answer).status().code() : 0;
        if (status == 413 || status == 417) { // Netty's own have empty bodies
            ReferenceCountUtil.release(answer);
            String why = status == 413 ? tooLarge() : "Expect: " + start.headers().get("Expect")
                    + " cannot be met; this endpoint knows only Expect: 100-continue.";
            return Replies.response(status, Replies.errorBody(status, why));
        }
        return answer;
    }
}
