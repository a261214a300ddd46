package byoc.mms;

import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.handler.codec.http.HttpRequest;
import io.netty.handler.codec.http.LastHttpContent;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;

/**
 * A request's body must arrive within the timeout of its headers: a client that sends part of a
 * body and stalls (slowloris) gets a 408 and loses the connection instead of holding its buffer.
 * Idle keep-alive connections between requests are not timed.
 */
final class ArrivalDeadline extends ChannelInboundHandlerAdapter {

    private final int seconds;
    private ScheduledFuture<?> timer;

    ArrivalDeadline(int seconds) {
        this.seconds = seconds;
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
        if (msg instanceof HttpRequest && timer == null) {
            timer = ctx.executor().schedule(() -> expire(ctx), seconds, TimeUnit.SECONDS);
        }
        if (msg instanceof LastHttpContent) {
            cancel();
        }
        ctx.fireChannelRead(msg);
    }

    private void expire(ChannelHandlerContext ctx) {
        timer = null;
        if (ctx.channel().isActive()) {
            Replies.errorDirect(ctx, 408, "The request did not arrive whole within " + seconds
                    + " s (SAGEMAKER_MODEL_SERVER_TIMEOUT).", true);
        }
    }

    private void cancel() {
        if (timer != null) {
            timer.cancel(false);
            timer = null;
        }
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) {
        cancel();
        ctx.fireChannelInactive();
    }
}
