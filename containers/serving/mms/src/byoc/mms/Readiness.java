package byoc.mms;

import com.amazonaws.ml.mms.wlm.ModelManager;
import com.amazonaws.ml.mms.wlm.WorkerState;
import com.amazonaws.ml.mms.wlm.WorkerThread;
import io.netty.channel.ChannelHandlerContext;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.stream.Collectors;

/**
 * GET /ping. MMS's own ping answers 200 while no worker has loaded the model (or while every
 * worker fails to), so SageMaker would send traffic too early. Single-model: ready once every
 * registered model has a worker with the model loaded, and not while a worker that let a request
 * time out is still the one holding it: from that 504 until a replacement has loaded the model,
 * /ping is 503. (A worker gets a new id each time MMS reconnects it.) Multi-model: SageMaker pings
 * before it loads any model, so a running server is ready.
 */
final class Readiness {

    private static final Map<String, Set<String>> SUSPECTS = new ConcurrentHashMap<>();

    private Readiness() {}

    /** A request for `model` timed out: none of its present workers counts as ready any more. */
    static void distrust(String model) {
        SUSPECTS.put(model, ModelManager.getInstance().getWorkers(model).stream()
                .map(WorkerThread::getWorkerId).collect(Collectors.toSet()));
    }

    static boolean ready(Settings settings) {
        if (settings.multiModel) {
            return true;
        }
        ModelManager manager = ModelManager.getInstance();
        return !manager.getModels().isEmpty() && manager.getModels().keySet().stream()
                .allMatch(name -> manager.getWorkers(name).stream().anyMatch(worker ->
                        worker.getState() == WorkerState.WORKER_MODEL_LOADED
                                && !SUSPECTS.getOrDefault(name, Set.of()).contains(worker.getWorkerId())));
    }

    static void answer(ChannelHandlerContext ctx, Settings settings) {
        boolean ready = ready(settings);
        Replies.json(ctx, ready ? 200 : 503, SageMakerApi.status(ready ? "Healthy" : "Loading"));
    }
}
