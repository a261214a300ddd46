package byoc.mms;

import com.amazonaws.ml.mms.archive.ModelNotFoundException;
import com.amazonaws.ml.mms.util.NettyUtils;
import com.amazonaws.ml.mms.util.messages.InputParameter;
import com.amazonaws.ml.mms.util.messages.RequestInput;
import com.amazonaws.ml.mms.util.messages.WorkerCommands;
import com.amazonaws.ml.mms.wlm.Job;
import com.amazonaws.ml.mms.wlm.ModelManager;
import io.netty.buffer.ByteBufUtil;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.http.FullHttpRequest;
import io.netty.handler.codec.http.HttpHeaderNames;
import java.util.Map;

/**
 * A prediction request, queued for the model's workers as MMS's own handler would, except that
 * the body always travels raw as the one input "body" with the request's Content-Type: MMS
 * decoded form-encoded and multipart bodies itself and failed with Java exceptions (500) on
 * bodies it could not parse. The handler (byoc.serving.payloads) decides by the content type.
 * Query strings are not passed on: SageMaker's InvokeEndpoint does not forward them.
 */
final class Invocations {

    private Invocations() {}

    /** `named`: the client named the model (/models/NAME/invoke), so an unknown one is a 404. */
    static void dispatch(ChannelHandlerContext ctx, FullHttpRequest request, String model, boolean named) {
        ModelManager manager = ModelManager.getInstance();
        if (!manager.getModels().containsKey(model)) {
            if (named) {
                Replies.error(ctx, 404, "No model named '" + model + "' is loaded.");
            } else {
                Replies.error(ctx, 503, "The model is still loading; /ping answers 200 once it is ready.");
            }
            return;
        }
        RequestInput input = new RequestInput(NettyUtils.getRequestId(ctx.channel()));
        for (Map.Entry<String, String> header : request.headers()) {
            input.updateHeaders(header.getKey(), header.getValue());
        }
        input.addParameter(new InputParameter("body", ByteBufUtil.getBytes(request.content()),
                request.headers().get(HttpHeaderNames.CONTENT_TYPE)));
        AnswerDeadline deadline = ctx.pipeline().get(AnswerDeadline.class);
        deadline.expectAnswer(model);
        boolean queued;
        try {
            queued = manager.addJob(new Job(ctx, model, WorkerCommands.PREDICT, input));
        } catch (ModelNotFoundException unloadedMeanwhile) {
            deadline.cancel();
            Replies.error(ctx, 404, "No model named '" + model + "' is loaded.");
            return;
        }
        if (!queued) {
            deadline.cancel();
            Replies.error(ctx, 503, "Model '" + model + "' has no worker ready or too many requests waiting"
                    + " (job_queue_size); retry shortly.");
        }
    }
}
