package byoc.mms;

import io.netty.channel.ChannelOption;
import io.netty.channel.ChannelPipeline;
import io.netty.handler.codec.http.HttpServerCodec;
import io.netty.handler.codec.http.HttpServerKeepAliveHandler;

/**
 * The pipeline of each connection to the serving port (SAGEMAKER_BIND_TO_PORT):
 *
 * <pre>
 *   http         HTTP/1.1 codec (request line 4 KiB, headers 8 KiB: longer is a 400)
 *   keepalive    closes the connection after the answer when the request asked for that
 *                (HTTP/1.0 without keep-alive, "Connection: close"), saying so in the answer
 *   arrival      a request must arrive whole within the timeout, else 408 (slow bodies)
 *   aggregator   bodies up to max_request_size; larger ones get a JSON 413 at once
 *   errors       MMS's own error answers rewritten into our JSON
 *   deadline     every prediction answered within the timeout, else 504
 *   handler      SageMaker's routes (SageMakerApi)
 * </pre>
 */
public final class PublicPort {

    private PublicPort() {}

    public static void initChannel(ChannelPipeline pipeline) {
        // MMS sets SO_LINGER 0 on every connection: closing after an error answer (as MMS does after
        // each 4xx/5xx) then resets the connection and may discard the answer before it is sent.
        // Close gracefully, so the client reads the JSON it was sent.
        pipeline.channel().config().setOption(ChannelOption.SO_LINGER, -1);
        Settings settings = Settings.get();
        pipeline.addLast("http", new HttpServerCodec());
        // MMS answers every 2xx with "Connection: keep-alive" and keeps the connection open, so an
        // HTTP/1.0 client that reads to the end of the connection waited for the idle timeout.
        pipeline.addLast("keepalive", new HttpServerKeepAliveHandler());
        pipeline.addLast("arrival", new ArrivalDeadline(settings.timeoutSeconds));
        pipeline.addLast("aggregator", new BodyLimit(settings.maxRequestBytes));
        pipeline.addLast("errors", new FrontendErrors());
        pipeline.addLast("deadline", new AnswerDeadline(settings.timeoutSeconds));
        pipeline.addLast("handler", new SageMakerApi(settings));
    }
}
