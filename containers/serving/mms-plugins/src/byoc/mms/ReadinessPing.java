package byoc.mms;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import software.amazon.ai.mms.servingsdk.Context;
import software.amazon.ai.mms.servingsdk.Model;
import software.amazon.ai.mms.servingsdk.ModelServerEndpoint;
import software.amazon.ai.mms.servingsdk.Worker;
import software.amazon.ai.mms.servingsdk.annotations.Endpoint;
import software.amazon.ai.mms.servingsdk.annotations.helpers.EndpointTypes;
import software.amazon.ai.mms.servingsdk.http.Request;
import software.amazon.ai.mms.servingsdk.http.Response;

/**
 * GET /ping: 200 only when the endpoint can answer, else 503.
 *
 * MMS's own /ping answers 200 "Healthy" while no worker has loaded the model
 * yet (or every worker fails to), so SageMaker would route traffic too early.
 * Single-model: ready once every registered model has a worker with the model
 * loaded. Multi-model: SageMaker pings before it loads any model, so the
 * server being up is enough.
 */
@Endpoint(urlPattern = "ping", endpointType = EndpointTypes.INFERENCE,
          description = "Ready only when the model is loaded")
public class ReadinessPing extends ModelServerEndpoint {
    private static final boolean MULTI_MODEL =
            "true".equalsIgnoreCase(System.getenv("SAGEMAKER_MULTI_MODEL"));

    static boolean ready(Map<String, Model> models) {
        if (MULTI_MODEL) {
            return true;
        }
        return !models.isEmpty() && models.values().stream()
                .allMatch(m -> m.getModelWorkers().stream().anyMatch(Worker::isRunning));
    }

    @Override
    public void doGet(Request request, Response response, Context context) throws IOException {
        boolean ready = ready(context.getModels());
        response.setStatus(ready ? 200 : 503);
        response.setContentType("application/json");
        String body = ready ? "{\"status\": \"Healthy\"}\n" : "{\"status\": \"Loading\"}\n";
        response.getOutputStream().write(body.getBytes(StandardCharsets.UTF_8));
    }
}
