package byoc.mms;

import io.netty.channel.ChannelDuplexHandler;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelPromise;
import io.netty.handler.codec.http.HttpResponse;
import io.netty.util.ReferenceCountUtil;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Every prediction is answered within the timeout of its arrival, queued or not: when the model
 * has not answered by then, the client gets a 504 and the connection closes; the model's late
 * answer, if one comes, is dropped. (MMS itself only times the worker, from when it starts on a
 * request, and then answers 500 "Worker died.".) The worker that overran is cut off by MMS at
 * the same timeout, and its process by the handler's alarm (byoc.serving.handler).
 *
 * It also counts the predictions awaited from each model, so that an unload can let them finish.
 */
public final class AnswerDeadline extends ChannelDuplexHandler {

    private static final Logger logger = LoggerFactory.getLogger(AnswerDeadline.class);

    private final int seconds;
    private ChannelHandlerContext ctx;
    private ScheduledFuture<?> timer;
    private boolean answeredForTheModel;
    private String awaited; // the model this connection's prediction is queued for or running on
    private static final Map<String, AtomicInteger> IN_FLIGHT = new ConcurrentHashMap<>();

    AnswerDeadline(int seconds) {
        this.seconds = seconds;
    }

    @Override
    public void handlerAdded(ChannelHandlerContext ctx) {
        this.ctx = ctx;
    }

    /** Called on the event loop before a prediction job is queued. */
    void expectAnswer(String model) {
        cancel();
        answeredForTheModel = false;
        awaited = model;
        IN_FLIGHT.computeIfAbsent(model, name -> new AtomicInteger()).incrementAndGet();
        timer = ctx.executor().schedule(() -> expire(model), seconds, TimeUnit.SECONDS);
    }

    /** The prediction was answered, or will not be (not queued, the client went): stop waiting. */
    void cancel() {
        if (timer != null) {
            timer.cancel(false);
            timer = null;
        }
        settle();
    }

    private void settle() {
        if (awaited != null) {
            IN_FLIGHT.get(awaited).decrementAndGet();
            awaited = null;
        }
    }

    /** Wait until no prediction of `model` is awaited, at most `seconds`; false if some still are. */
    static boolean awaitIdle(String model, int seconds) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        AtomicInteger count;
        while ((count = IN_FLIGHT.get(model)) != null && count.get() > 0) {
            if (System.nanoTime() > deadline) {
                return false;
            }
            Thread.sleep(10);
        }
        return true;
    }

    private void expire(String model) {
        timer = null;
        settle();
        answeredForTheModel = true;
        logger.warn("model {} did not answer within {} s: answered 504", model, seconds);
        Readiness.distrust(model);
        ctx.writeAndFlush(Replies.response(504, Replies.errorBody(504, "The model did not answer within "
                + seconds + " s (SAGEMAKER_MODEL_SERVER_TIMEOUT); its worker is being replaced.")))
                .addListener(ChannelFutureListener.CLOSE);
    }

    @Override
    public void write(ChannelHandlerContext ctx, Object msg, ChannelPromise promise) {
        if (msg instanceof HttpResponse) {
            if (answeredForTheModel) { // the late answer of a request we already answered
                answeredForTheModel = false;
                ReferenceCountUtil.release(msg);
                promise.trySuccess();
                return;
            }
            cancel();
        }
        ctx.write(msg, promise);
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) {
        cancel();
        ctx.fireChannelInactive();
    }
}
