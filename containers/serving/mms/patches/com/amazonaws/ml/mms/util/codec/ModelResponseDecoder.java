package com.amazonaws.ml.mms.util.codec;

import com.amazonaws.ml.mms.util.messages.ModelWorkerResponse;
import com.amazonaws.ml.mms.util.messages.Predictions;
import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.ByteToMessageDecoder;
import io.netty.handler.codec.CorruptedFrameException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * byoc's replacement for multi-model-server 1.1.11's decoder of a Python worker's reply (same
 * name, swapped into model-server.jar by the image build; see ../PATCHES.md).
 *
 * <p>A reply is big-endian int32s and length-prefixed fields:
 *
 * <pre>
 *   reply      = code message prediction* END(-1)
 *   prediction = requestId contentType status:int32 reasonPhrase headers body
 *   headers    = count:int32 (key value){count}
 *   field      = length:int32 bytes[length]
 * </pre>
 *
 * It may reach us in any number of socket reads. MMS's own decoder parsed as it read and missed
 * the "not all here yet" case inside the header map and before the status code, so a reply split
 * there killed the worker's connection ("Invalid message size: -3"). This one first walks the
 * frame with absolute reads and only parses it once every byte of it is there: a split anywhere
 * just waits for the next read. Only real corruption (a negative length, a field over
 * max_response_size) is an error, as before.
 */
public class ModelResponseDecoder extends ByteToMessageDecoder {

    private static final int END = -1;
    private static final int INCOMPLETE = -1;

    private final int maxBufferSize;

    public ModelResponseDecoder(int maxBufferSize) {
        this.maxBufferSize = maxBufferSize;
    }

    @Override
    protected void decode(ChannelHandlerContext ctx, ByteBuf in, List<Object> out) {
        if (frameEnd(in) != INCOMPLETE) {
            out.add(parse(in));
        }
    }

    /** The index just past the complete reply at the reader index, or INCOMPLETE. */
    private int frameEnd(ByteBuf in) {
        int p = skip(in, in.readerIndex(), 4); // code
        p = skipField(in, p); // message
        while (p != INCOMPLETE) {
            if (!has(in, p, 4)) {
                return INCOMPLETE;
            }
            if (in.getInt(p) == END) {
                return p + 4;
            }
            p = skipField(in, p); // request id
            p = skipField(in, p); // content type
            p = skip(in, p, 4); // status code
            p = skipField(in, p); // reason phrase
            p = skipHeaders(in, p);
            p = skipField(in, p); // body
        }
        return INCOMPLETE;
    }

    private static boolean has(ByteBuf in, int p, int bytes) {
        return in.writerIndex() - p >= bytes;
    }

    private static int skip(ByteBuf in, int p, int bytes) {
        return p != INCOMPLETE && has(in, p, bytes) ? p + bytes : INCOMPLETE;
    }

    private int skipField(ByteBuf in, int p) {
        if (p == INCOMPLETE || !has(in, p, 4)) {
            return INCOMPLETE;
        }
        return skip(in, p + 4, checked(in.getInt(p), "field length"));
    }

    private int skipHeaders(ByteBuf in, int p) {
        if (p == INCOMPLETE || !has(in, p, 4)) {
            return INCOMPLETE;
        }
        int count = checked(in.getInt(p), "header count");
        p += 4;
        for (int i = 0; i < 2 * count && p != INCOMPLETE; ++i) {
            p = skipField(in, p);
        }
        return p;
    }

    /** A length or count as sent; negative or over max_response_size means a corrupt frame. */
    private int checked(int value, String what) {
        if (value < 0) {
            throw new CorruptedFrameException("Invalid " + what + ": " + value);
        }
        if (value > maxBufferSize) {
            throw new CorruptedFrameException("Message size exceed limit: " + value);
        }
        return value;
    }

    /** Reads one reply that frameEnd found complete. */
    private static ModelWorkerResponse parse(ByteBuf in) {
        ModelWorkerResponse reply = new ModelWorkerResponse();
        reply.setCode(in.readInt());
        reply.setMessage(readString(in));
        List<Predictions> predictions = new ArrayList<>();
        while (in.getInt(in.readerIndex()) != END) {
            Predictions prediction = new Predictions();
            prediction.setRequestId(readString(in));
            prediction.setContentType(readString(in));
            prediction.setStatusCode(in.readInt());
            String reason = readString(in);
            // Python sends "" for "no phrase": let Netty use the standard one ("200 OK", not "200 ").
            prediction.setReasonPhrase(reason.isEmpty() ? null : reason);
            prediction.setHeaders(readHeaders(in));
            prediction.setResp(readBytes(in));
            predictions.add(prediction);
        }
        in.skipBytes(4);
        reply.setPredictions(predictions);
        return reply;
    }

    private static Map<String, String> readHeaders(ByteBuf in) {
        int count = in.readInt();
        Map<String, String> headers = new LinkedHashMap<>();
        for (int i = 0; i < count; ++i) {
            headers.put(readString(in), readString(in));
        }
        return headers;
    }

    private static String readString(ByteBuf in) {
        return in.readCharSequence(in.readInt(), StandardCharsets.UTF_8).toString();
    }

    private static byte[] readBytes(ByteBuf in) {
        byte[] bytes = new byte[in.readInt()];
        in.readBytes(bytes);
        return bytes;
    }
}
