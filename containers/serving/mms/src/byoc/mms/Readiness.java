package byoc.mms;

import com.amazonaws.ml.mms.wlm.ModelManager;
import com.amazonaws.ml.mms.wlm.WorkerState;
import io.netty.channel.ChannelHandlerContext;

/**
 * GET /ping. MMS's own ping answers 200 while no worker has loaded the model (or while every
 * worker fails to), so SageMaker would send traffic too early. Single-model: ready once every
 * registered model has a worker with the model loaded, so 503 while the model loads and while a
 * worker that was cut off is replaced. Multi-model: SageMaker pings before it loads any model,
 * so a running server is ready.
 */
final class Readiness {

    private Readiness() {}

    static boolean ready(Settings settings) {
        if (settings.multiModel) {
            return true;
        }
        ModelManager manager = ModelManager.getInstance();
        return !manager.getModels().isEmpty() && manager.getModels().keySet().stream()
                .allMatch(name -> manager.getWorkers(name).stream()
                        .anyMatch(worker -> worker.getState() == WorkerState.WORKER_MODEL_LOADED));
    }

    static void answer(ChannelHandlerContext ctx, Settings settings) {
        boolean ready = ready(settings);
        Replies.json(ctx, ready ? 200 : 503, SageMakerApi.status(ready ? "Healthy" : "Loading"));
    }
}
