package byoc.mms;

import com.amazonaws.ml.mms.wlm.ModelManager;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Set;
import software.amazon.ai.mms.servingsdk.Context;
import software.amazon.ai.mms.servingsdk.ModelServerEndpoint;
import software.amazon.ai.mms.servingsdk.annotations.Endpoint;
import software.amazon.ai.mms.servingsdk.annotations.helpers.EndpointTypes;
import software.amazon.ai.mms.servingsdk.http.Request;
import software.amazon.ai.mms.servingsdk.http.Response;

/**
 * POST /invocations-model?name=NAME (management API): /invocations goes to NAME.
 *
 * MMS sends /invocations to the model named on its command line, but such a
 * model is always registered with batch size 1. `serve` registers the model
 * through the management API instead, with the batching settings, and then
 * names it here. MMS's plugin SDK has no call for this, so it uses MMS's own
 * ModelManager (multi-model-server 1.1.11, pinned in pyproject.toml).
 */
@Endpoint(urlPattern = "invocations-model", endpointType = EndpointTypes.MANAGEMENT,
          description = "Name the model that /invocations answers with")
public class InvocationsModel extends ModelServerEndpoint {
    @Override
    public void doPost(Request request, Response response, Context context) throws IOException {
        List<String> names = request.getParameter("name");
        String name = names == null || names.isEmpty() ? "" : names.get(0);
        response.setContentType("application/json");
        if (!context.getModels().containsKey(name)) {
            response.setStatus(404);
            write(response, "{\"error\": \"no registered model is named '" + name.replace("\"", "") + "'\"}\n");
            return;
        }
        Set<String> startupModels = ModelManager.getInstance().getStartupModels();
        synchronized (startupModels) {
            startupModels.clear();
            startupModels.add(name);
        }
        response.setStatus(200);
        write(response, "{\"status\": \"/invocations answers with " + name + "\"}\n");
    }

    private static void write(Response response, String body) throws IOException {
        response.getOutputStream().write(body.getBytes(StandardCharsets.UTF_8));
    }
}
