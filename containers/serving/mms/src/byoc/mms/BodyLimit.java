package byoc.mms;

import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelPipeline;
import io.netty.handler.codec.http.FullHttpMessage;
import io.netty.handler.codec.http.HttpMessage;
import io.netty.handler.codec.http.HttpObjectAggregator;
import io.netty.handler.codec.http.HttpResponse;
import io.netty.handler.codec.http.HttpUtil;
import io.netty.util.ReferenceCountUtil;

/**
 * Netty's aggregator, answering a body over the limit with our JSON 413 (Netty's own has an
 * empty body). A Content-Length over the limit is refused before the body is read; the rest of
 * the body is read and thrown away, so the client can read the answer and reuse the connection.
 */
final class BodyLimit extends HttpObjectAggregator {

    BodyLimit(int maxBytes) {
        super(maxBytes);
    }

    private String tooLarge() {
        return "The request body is larger than " + maxContentLength() + " bytes, the most this endpoint"
                + " accepts (BYOC_MAX_PAYLOAD_MB).";
    }

    @Override
    protected void handleOversizedMessage(ChannelHandlerContext ctx, HttpMessage oversized) {
        // A request we were still aggregating (chunked) ends the connection; one refused from its
        // Content-Length can keep it, as its body is discarded as it arrives.
        boolean close = oversized instanceof FullHttpMessage || !HttpUtil.isKeepAlive(oversized);
        Replies.errorDirect(ctx, 413, tooLarge(), close);
    }

    @Override
    protected Object newContinueResponse(HttpMessage start, int maxContentLength, ChannelPipeline pipeline) {
        Object answer = super.newContinueResponse(start, maxContentLength, pipeline);
        if (answer instanceof HttpResponse && ((HttpResponse) answer).status().code() == 413) {
            ReferenceCountUtil.release(answer);
            return Replies.response(413, Replies.errorBody(413, tooLarge()));
        }
        return answer;
    }
}
