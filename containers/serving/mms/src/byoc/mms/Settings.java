package byoc.mms;

import com.amazonaws.ml.mms.util.ConfigManager;
import java.nio.file.Path;

/**
 * What `serve` (byoc.serving.serve.mms_properties) tells our frontend code, through MMS's
 * config.properties: the byoc_* keys, and MMS's own max_request_size.
 */
public final class Settings {

    private static Settings instance;

    public final boolean multiModel;
    public final String modelName; // the model /invocations answers with (single-model endpoints)
    public final Path modelStore; // multi-model endpoints load from directories under this only
    public final String handler;
    public final String python;
    public final int workers;
    public final int batchSize;
    public final int maxBatchDelayMs;
    public final int timeoutSeconds; // SAGEMAKER_MODEL_SERVER_TIMEOUT: requests are answered by then
    public final int workerTimeoutSeconds; // MMS's own timeout of a busy worker, a backstop after it
    public final int maxRequestBytes;
    public final String executionParameters; // GET /execution-parameters, as serve computed it (JSON)

    private Settings(ConfigManager config) {
        multiModel = Boolean.parseBoolean(config.getProperty("byoc_multi_model", "false"));
        modelName = config.getProperty("byoc_model_name", "model");
        modelStore = Path.of(config.getProperty("byoc_model_store", "/opt/ml/models"));
        handler = config.getProperty("default_service_handler", "byoc.serving.handler:handle");
        python = config.getPythonExecutable();
        workers = number(config, "byoc_workers", 1);
        batchSize = number(config, "byoc_batch_size", 1);
        maxBatchDelayMs = number(config, "byoc_max_batch_delay_ms", 0);
        timeoutSeconds = number(config, "byoc_timeout_seconds", 60);
        workerTimeoutSeconds = number(config, "default_response_timeout_seconds", timeoutSeconds + 1);
        maxRequestBytes = config.getMaxRequestSize();
        executionParameters = config.getProperty("byoc_execution_parameters", "{}");
    }

    public static synchronized Settings get() {
        if (instance == null) {
            instance = new Settings(ConfigManager.getInstance());
        }
        return instance;
    }

    private static int number(ConfigManager config, String key, int fallback) {
        return Integer.parseInt(config.getProperty(key, String.valueOf(fallback)).trim());
    }
}
