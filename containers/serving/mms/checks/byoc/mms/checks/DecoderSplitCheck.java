package byoc.mms.checks;

import com.amazonaws.ml.mms.util.codec.ModelResponseDecoder;
import com.amazonaws.ml.mms.util.messages.ModelWorkerResponse;
import com.amazonaws.ml.mms.util.messages.Predictions;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.embedded.EmbeddedChannel;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * Feeds whichever ModelResponseDecoder is first on the class path worker replies cut into pieces
 * at every byte offset, as socket reads may deliver them, and checks that each reply comes out
 * whole and right. Exit 0 when all do, 1 otherwise (with a summary of what broke).
 *
 * <pre>java -cp checks.jar:model-server.jar byoc.mms.checks.DecoderSplitCheck</pre>
 *
 * MMS 1.1.11's own decoder fails this (splits inside a header map or before a status code);
 * the image build and tests/containers/test_mms_patches.py run it against both.
 */
public final class DecoderSplitCheck {

    private static final int MAX_FIELD = 6_553_500; // MMS's default max_response_size

    record Prediction(String id, String type, int status, String reason, Map<String, String> headers,
                      byte[] body) {}

    record Reply(int code, String message, List<Prediction> predictions) {}

    private int trials;
    private int failures;
    private final Map<String, Integer> causes = new LinkedHashMap<>();

    public static void main(String[] args) {
        DecoderSplitCheck check = new DecoderSplitCheck();
        for (Reply reply : replies()) {
            check.everySplit(List.of(reply));
        }
        check.everySplit(List.of(replies().get(1), replies().get(0))); // a load reply, then a batch
        check.corruptFramesAreRefused();
        System.out.printf("%s: %d of %d split replies decoded correctly%n",
                ModelResponseDecoder.class.getProtectionDomain().getCodeSource().getLocation(),
                check.trials - check.failures, check.trials);
        check.causes.forEach((cause, count) -> System.out.printf("  %5d x %s%n", count, cause));
        System.exit(check.failures == 0 ? 0 : 1);
    }

    /** A batch of four answers as our handler writes them, a load reply and an error reply. */
    static List<Reply> replies() {
        List<Prediction> batch = new ArrayList<>();
        for (int i = 0; i < 4; ++i) {
            Map<String, String> headers = new LinkedHashMap<>();
            headers.put("content-type", "application/json");
            if (i % 2 == 1) {
                headers.put("x-byoc-note", "é " + i);
            }
            String body = i == 2 ? "{\"error\": \"bad\", \"status\": 415}"
                    : "{\"predictions\": [{\"label\": \"Trouser\", \"probability\": 0.9" + i + "}]}";
            batch.add(new Prediction("3f2b8c1e-0000-4000-8000-00000000000" + i, "application/json",
                    i == 2 ? 415 : 200, i == 2 ? "Unsupported Media Type" : "", headers,
                    body.getBytes(StandardCharsets.UTF_8)));
        }
        List<Prediction> failed = List.of(new Prediction("id-9", "", 503, "", Map.of(), "error".getBytes()));
        return List.of(new Reply(200, "Prediction success", batch),
                new Reply(200, "loaded model m. [PID]:4242", List.of()),
                new Reply(503, "Prediction failed", failed));
    }

    static byte[] encode(List<Reply> replies) {
        ByteBuf out = Unpooled.buffer();
        for (Reply reply : replies) {
            out.writeInt(reply.code());
            field(out, reply.message());
            for (Prediction p : reply.predictions()) {
                field(out, p.id());
                field(out, p.type());
                out.writeInt(p.status());
                field(out, p.reason());
                out.writeInt(p.headers().size());
                p.headers().forEach((k, v) -> {
                    field(out, k);
                    field(out, v);
                });
                out.writeInt(p.body().length);
                out.writeBytes(p.body());
            }
            out.writeInt(-1);
        }
        byte[] bytes = new byte[out.readableBytes()];
        out.readBytes(bytes);
        return bytes;
    }

    private static void field(ByteBuf out, String text) {
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        out.writeInt(bytes.length);
        out.writeBytes(bytes);
    }

    /** In two pieces at every offset, in three pieces around the middle, and byte by byte. */
    private void everySplit(List<Reply> expected) {
        byte[] frame = encode(expected);
        for (int cut = 1; cut < frame.length; ++cut) {
            trial(expected, frame, cut);
        }
        for (int first = 1; first < frame.length; first += 7) {
            trial(expected, frame, first, Math.min(frame.length - 1, first + frame.length / 3));
        }
        int[] everyByte = new int[frame.length - 1];
        Arrays.setAll(everyByte, i -> i + 1);
        trial(expected, frame, everyByte);
    }

    private void trial(List<Reply> expected, byte[] frame, int... cuts) {
        ++trials;
        EmbeddedChannel channel = new EmbeddedChannel(new ModelResponseDecoder(MAX_FIELD));
        try {
            int from = 0;
            for (int cut : cuts) {
                channel.writeInbound(Unpooled.wrappedBuffer(Arrays.copyOfRange(frame, from, cut)));
                from = cut;
            }
            channel.writeInbound(Unpooled.wrappedBuffer(Arrays.copyOfRange(frame, from, frame.length)));
            List<ModelWorkerResponse> decoded = new ArrayList<>();
            for (Object o = channel.readInbound(); o != null; o = channel.readInbound()) {
                decoded.add((ModelWorkerResponse) o);
            }
            if (!same(expected, decoded)) {
                fail("decoded, but not what was sent");
            }
        } catch (Throwable t) {
            Throwable root = t.getCause() != null ? t.getCause() : t;
            fail(root.getClass().getSimpleName() + ": " + root.getMessage());
        } finally {
            close(channel);
        }
    }

    /** Closing makes the decoder look at what is left over; a left-over was already counted. */
    private static void close(EmbeddedChannel channel) {
        try {
            channel.finishAndReleaseAll();
        } catch (Throwable ignored) {
            // counted where it was thrown first
        }
    }

    private void fail(String cause) {
        ++failures;
        causes.merge(cause.replaceAll("\\d+", "N"), 1, Integer::sum);
    }

    private static boolean same(List<Reply> expected, List<ModelWorkerResponse> decoded) {
        if (expected.size() != decoded.size()) {
            return false;
        }
        for (int i = 0; i < expected.size(); ++i) {
            Reply want = expected.get(i);
            ModelWorkerResponse got = decoded.get(i);
            if (want.code() != got.getCode() || !want.message().equals(got.getMessage())
                    || want.predictions().size() != got.getPredictions().size()) {
                return false;
            }
            for (int j = 0; j < want.predictions().size(); ++j) {
                if (!same(want.predictions().get(j), got.getPredictions().get(j))) {
                    return false;
                }
            }
        }
        return true;
    }

    private static boolean same(Prediction want, Predictions got) {
        return want.id().equals(got.getRequestId()) && want.status() == got.getStatusCode()
                && want.type().equals(Objects.toString(got.getContentType(), ""))
                && want.reason().equals(Objects.toString(got.getReasonPhrase(), ""))
                && want.headers().equals(got.getHeaders()) && Arrays.equals(want.body(), got.getResp());
    }

    /** A negative length is corruption, not a short read: the decoder must say so. */
    private void corruptFramesAreRefused() {
        ++trials;
        byte[] frame = encode(List.of(replies().get(0)));
        frame[4] = (byte) 0x80; // the message length becomes negative
        EmbeddedChannel channel = new EmbeddedChannel(new ModelResponseDecoder(MAX_FIELD));
        try {
            channel.writeInbound(Unpooled.wrappedBuffer(frame));
            fail("a corrupt frame was not refused");
        } catch (Throwable expected) {
            // refused, as it must be
        } finally {
            close(channel);
        }
    }
}
