package byoc.mms;

import com.amazonaws.ml.mms.archive.Manifest;
import com.amazonaws.ml.mms.archive.ModelException;
import com.amazonaws.ml.mms.http.ConflictStatusException;
import com.amazonaws.ml.mms.wlm.Model;
import com.amazonaws.ml.mms.wlm.ModelManager;
import com.google.gson.JsonObject;
import io.netty.buffer.ByteBufUtil;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.http.FullHttpRequest;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.QueryStringDecoder;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * SageMaker's multi-model protocol, on MMS's model manager, and no more of MMS's management API:
 *
 * <pre>
 *   POST /models {"model_name": N, "url": DIR}   load: 200; 400/403 a bad request or package
 *                                                (LoadRequest), 409 already loaded, 507 no room
 *   GET /models                                  {"models": [{"modelName", "modelUrl"}], "nextPageToken"}
 *   GET /models/N                                {"modelName", "modelUrl"}, 404 if not loaded
 *   DELETE /models/N                             unload (after its requests in flight), 404 if not loaded
 *   POST /models/N/invoke                        the model N (Invocations)
 * </pre>
 *
 * A load names nothing but a directory under /opt/ml/models: no URL to download, no handler, no
 * runtime, no worker counts or timeouts (ours apply); there is no call to scale workers or to
 * retarget /invocations. Loads and unloads run one at a time, off the event loop.
 */
final class MultiModels {

    private static final Logger logger = LoggerFactory.getLogger(MultiModels.class);
    private static final int MAX_LOAD_BODY = 64 * 1024;
    private static final int MAX_PAGE = 100;
    private static final ExecutorService LOADS = Executors.newSingleThreadExecutor(r -> {
        Thread thread = new Thread(r, "byoc-model-loads");
        thread.setDaemon(true);
        return thread;
    });

    private MultiModels() {}

    static void route(ChannelHandlerContext ctx, FullHttpRequest request, List<String> path, Settings settings) {
        if (path.size() == 1) {
            if (SageMakerApi.allowed(ctx, request.method(), "GET", "POST")) {
                if ("GET".equals(request.method().name())) {
                    list(ctx, new QueryStringDecoder(request.uri()));
                } else {
                    load(ctx, request, settings);
                }
            }
        } else if (path.size() == 2) {
            if (SageMakerApi.allowed(ctx, request.method(), "GET", "DELETE")) {
                if ("GET".equals(request.method().name())) {
                    describe(ctx, path.get(1));
                } else {
                    LOADS.execute(() -> unload(ctx, path.get(1), settings));
                }
            }
        } else if (path.size() == 3 && path.get(2).equals("invoke")) {
            if (SageMakerApi.allowed(ctx, request.method(), "POST")) {
                Invocations.dispatch(ctx, request, path.get(1), true);
            }
        } else {
            Replies.error(ctx, 404, "No such resource: " + request.uri());
        }
    }

    private static void list(ChannelHandlerContext ctx, QueryStringDecoder query) {
        int limit = intParameter(query, "limit", MAX_PAGE);
        int start = intParameter(query, "next_page_token", 0);
        if (limit < 1 || start < 0) {
            Replies.error(ctx, 400, "limit must be at least 1 and next_page_token a whole number >= 0.");
            return;
        }
        Map<String, Model> models = ModelManager.getInstance().getModels();
        List<String> names = new ArrayList<>(models.keySet());
        names.sort(null);
        int end = Math.min(names.size(), start + Math.min(limit, MAX_PAGE));
        List<Map<String, String>> page = new ArrayList<>();
        for (String name : names.subList(Math.min(start, end), end)) {
            page.add(Map.of("modelName", name, "modelUrl", models.get(name).getModelUrl()));
        }
        Map<String, Object> answer = new LinkedHashMap<>();
        answer.put("models", page);
        if (end < names.size()) {
            answer.put("nextPageToken", String.valueOf(end));
        }
        Replies.json(ctx, 200, answer);
    }

    private static int intParameter(QueryStringDecoder query, String name, int fallback) {
        List<String> values = query.parameters().get(name);
        try {
            // An empty value is no value (a first page asked for as "?next_page_token=").
            return values == null || values.isEmpty() || values.get(0).isEmpty() ? fallback
                    : Integer.parseInt(values.get(0));
        } catch (NumberFormatException e) {
            return -1;
        }
    }

    private static void describe(ChannelHandlerContext ctx, String name) {
        Model model = ModelManager.getInstance().getModels().get(name);
        if (model == null) {
            Replies.error(ctx, 404, "No model named '" + name + "' is loaded.");
        } else {
            Replies.json(ctx, 200, Map.of("modelName", name, "modelUrl", model.getModelUrl()));
        }
    }

    private static void load(ChannelHandlerContext ctx, FullHttpRequest request, Settings settings) {
        if (!new QueryStringDecoder(request.uri()).parameters().isEmpty()) {
            Replies.error(ctx, 400, "POST /models takes a JSON body {\"model_name\": ..., \"url\": ...} and no"
                    + " query parameters (MMS's url=, handler=, runtime=, initial_workers= ... are refused).");
            return;
        }
        if (request.content().readableBytes() > MAX_LOAD_BODY) {
            Replies.error(ctx, 413, "A load request is a small JSON object; this one has more than "
                    + MAX_LOAD_BODY + " bytes.");
            return;
        }
        byte[] body = ByteBufUtil.getBytes(request.content()); // the request is released after we return
        LOADS.execute(() -> {
            try {
                loadChecked(ctx, LoadRequest.check(body, settings), settings);
            } catch (Exception e) {
                logger.error("model load failed", e);
                Replies.error(ctx, 500, "The model could not be loaded; the container log says why.");
            }
        });
    }

    private static void loadChecked(ChannelHandlerContext ctx, JsonObject checked, Settings settings)
            throws Exception {
        int status = checked.get("status").getAsInt();
        if (status != 200) {
            Replies.error(ctx, status, checked.get("error").getAsString());
            return;
        }
        String name = checked.get("model_name").getAsString();
        String path = checked.get("path").getAsString();
        ModelManager manager = ModelManager.getInstance();
        if (manager.getModels().containsKey(name)) {
            Replies.error(ctx, 409, "A model named '" + name + "' is already loaded.");
            return;
        }
        try {
            manager.registerModel(path, name, Manifest.RuntimeType.PYTHON, settings.handler, settings.batchSize,
                    settings.maxBatchDelayMs, settings.workerTimeoutSeconds, null, "false");
        } catch (ConflictStatusException e) {
            Replies.error(ctx, 409, "A model named '" + name + "' is already loaded.");
            return;
        } catch (ModelException e) {
            forget(name);
            Replies.error(ctx, 400, "The model in " + path + " cannot be registered: " + e.getMessage());
            return;
        } catch (Exception e) { // MMS's backend process for the model did not start
            logger.error("model {} could not be registered", name, e);
            forget(name); // MMS keeps a model whose backend failed to start, and would answer 409 after
            Replies.error(ctx, 500, "The model server could not start a worker for model '" + name
                    + "'; the container log says why.");
            return;
        }
        startWorkers(ctx, name, settings);
    }

    private static void startWorkers(ChannelHandlerContext ctx, String name, Settings settings) throws Exception {
        // A second worker of an earlier failed load may have written its reason after we read it:
        // this load's failure must not be answered with that one.
        Files.deleteIfExists(refusalFile(name));
        HttpResponseStatus started = ModelManager.getInstance().updateModel(name, settings.workers, settings.workers)
                .get(settings.workerTimeoutSeconds + 60L, TimeUnit.SECONDS);
        if (started.code() == 200) {
            logger.info("model {} loaded", name);
            Replies.json(ctx, 200, SageMakerApi.status("Model '" + name + "' loaded."));
            return;
        }
        forget(name); // MMS would keep retrying a worker that cannot load the model
        String refused = refusal(name);
        if (refused != null) {
            Replies.error(ctx, 400, "Model '" + name + "' cannot serve: " + refused);
        } else if (started.code() == 507) {
            Replies.error(ctx, 507, "Not enough memory to load model '" + name + "'; unload other models"
                    + " or use an instance with more memory.");
        } else {
            Replies.error(ctx, 500, "The worker could not load model '" + name + "'; the container log says"
                    + " why.");
        }
    }

    /**
     * Why the worker refused the model's package (its weights do not fit model.json, or are not
     * finite), which it writes into our run directory (byoc.serving.handler); null if it did not.
     */
    private static String refusal(String name) {
        Path file = refusalFile(name);
        try {
            String reason = Files.readString(file, StandardCharsets.UTF_8).strip();
            Files.deleteIfExists(file);
            return reason;
        } catch (IOException e) {
            return null;
        }
    }

    private static Path refusalFile(String name) {
        return Paths.get(System.getenv("TMPDIR"), "cannot-serve." + name); // settings.refusal_file
    }

    /** Unregister a model that failed to start, if MMS kept it. */
    private static void forget(String name) {
        if (ModelManager.getInstance().getModels().containsKey(name)) {
            ModelManager.getInstance().unregisterModel(name);
        }
    }

    private static void unload(ChannelHandlerContext ctx, String name, Settings settings) {
        // SageMaker unloads the least recently used model when it needs the memory, whether or not
        // requests for it are still queued or running: they are answered first (within the timeout
        // they have anyway), not cut off with a 500 when MMS stops the model's workers.
        try {
            if (ModelManager.getInstance().getModels().containsKey(name)
                    && !AnswerDeadline.awaitIdle(name, settings.timeoutSeconds)) {
                logger.warn("model {}: requests still unanswered after {} s; unloading it", name,
                        settings.timeoutSeconds);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        HttpResponseStatus status = ModelManager.getInstance().unregisterModel(name);
        if (status == HttpResponseStatus.NOT_FOUND) {
            Replies.error(ctx, 404, "No model named '" + name + "' is loaded.");
        } else if (status == HttpResponseStatus.OK) {
            logger.info("model {} unloaded", name);
            Replies.json(ctx, 200, SageMakerApi.status("Model '" + name + "' unloaded."));
        } else {
            Replies.error(ctx, 500, "Model '" + name + "' could not be unloaded (" + status + "); retry.");
        }
    }
}
