package byoc.mms;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.TimeUnit;

/**
 * Checks a load request in Python (byoc.serving.load_request), run as the model server's own
 * user: the body, the model name, the directory (under /opt/ml/models, readable by this user, a
 * model package), and whether there is memory to load it. One checker, shared with the unit
 * tests; the answer is one JSON line: {"status": 200, "model_name", "path"} or {"status", "error"}.
 */
final class LoadRequest {

    private static final long CHECK_SECONDS = 60;

    private LoadRequest() {}

    static JsonObject check(byte[] body, Settings settings) throws IOException, InterruptedException {
        Process process = new ProcessBuilder(settings.python, "-m", "byoc.serving.load_request",
                "--store", settings.modelStore.toString(), "--workers", String.valueOf(settings.workers))
                .redirectError(ProcessBuilder.Redirect.INHERIT)
                .start();
        try (OutputStream stdin = process.getOutputStream()) {
            stdin.write(body);
        }
        // Its answer is one short line, well within a pipe's buffer: wait first, then read.
        if (!process.waitFor(CHECK_SECONDS, TimeUnit.SECONDS)) {
            process.destroyForcibly();
            throw new IOException("the load-request check did not finish within " + CHECK_SECONDS + " s");
        }
        byte[] out = process.getInputStream().readNBytes(64 * 1024);
        String text = new String(out, StandardCharsets.UTF_8).trim();
        String last = text.substring(text.lastIndexOf('\n') + 1);
        return JsonParser.parseString(last).getAsJsonObject();
    }
}
