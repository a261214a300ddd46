package byoc.mms.checks;

import com.amazonaws.ml.mms.util.messages.RequestInput;
import com.amazonaws.ml.mms.util.messages.WorkerCommands;
import com.amazonaws.ml.mms.wlm.Job;
import com.amazonaws.ml.mms.wlm.Model;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Collects batches with whichever wlm.Model is first on the class path, batch size 8 and a
 * max_batch_delay of 300 ms (long, so that the waits cannot be mistaken for scheduling noise),
 * and checks what the server's batching promises: a lone request is sent at once, queued ones go
 * together, ones still arriving under load join the batch, a full batch goes without waiting.
 * Exit 0 when all hold, 1 otherwise.
 *
 * <pre>java -cp checks.jar:model-server.jar byoc.mms.checks.BatchCollectionCheck</pre>
 *
 * MMS 1.1.11's own Model fails the first: it waits the whole delay for company. The image build
 * and tests/containers/test_mms_frontend.py run it against both.
 */
public final class BatchCollectionCheck {

    private static final int DELAY_MS = 300;
    private static final long PROMPT_MS = 150; // "at once": well under the delay
    private static int failures;
    private static int sequence;

    public static void main(String[] args) throws Exception {
        Model model = new Model(null, 100, null);
        model.setBatchSize(8);
        model.setMaxBatchDelay(DELAY_MS);

        queue(model, 1);
        expect("a lone request is sent at once", model, 1, 0, PROMPT_MS);

        queue(model, 5);
        expect("queued requests go together", model, 5, 0, DELAY_MS + PROMPT_MS);

        queue(model, 2);
        Thread arriving = new Thread(() -> {
            for (int i = 0; i < 3; i++) {
                pause(40);
                queue(model, 1);
            }
        });
        arriving.start();
        expect("requests arriving under load join the batch", model, 5, 100, DELAY_MS + PROMPT_MS);
        arriving.join();

        queue(model, 11);
        expect("a full batch goes without waiting", model, 8, 0, PROMPT_MS);
        expect("and the rest after it", model, 3, 0, DELAY_MS + PROMPT_MS);

        System.out.printf("%s: %s%n", Model.class.getProtectionDomain().getCodeSource().getLocation(),
                failures == 0 ? "batches collected as promised" : failures + " check(s) failed");
        System.exit(failures == 0 ? 0 : 1);
    }

    private static void queue(Model model, int count) {
        for (int i = 0; i < count; i++) {
            String id = "request-" + (++sequence);
            model.addJob(new Job(null, "model", WorkerCommands.PREDICT, new RequestInput(id)));
        }
    }

    private static void expect(String what, Model model, int size, long atLeastMs, long atMostMs)
            throws InterruptedException {
        Map<String, Job> batch = new LinkedHashMap<>();
        long started = System.nanoTime();
        model.pollBatch("worker-1", 0, batch);
        long tookMs = (System.nanoTime() - started) / 1_000_000;
        boolean ok = batch.size() == size && tookMs >= atLeastMs && tookMs <= atMostMs;
        System.out.printf("  %s %s: batch of %d in %d ms (expected %d, %d-%d ms)%n", ok ? "ok  " : "FAIL", what,
                batch.size(), tookMs, size, atLeastMs, atMostMs);
        if (!ok) {
            failures++;
        }
    }

    private static void pause(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
