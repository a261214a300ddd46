package com.amazonaws.ml.mms;

import byoc.mms.PublicPort;
import com.amazonaws.ml.mms.http.ApiDescriptionRequestHandler;
import com.amazonaws.ml.mms.http.HttpRequestHandler;
import com.amazonaws.ml.mms.http.HttpRequestHandlerChain;
import com.amazonaws.ml.mms.http.InvalidRequestHandler;
import com.amazonaws.ml.mms.http.ManagementRequestHandler;
import com.amazonaws.ml.mms.servingsdk.impl.PluginsManager;
import com.amazonaws.ml.mms.util.ConfigManager;
import com.amazonaws.ml.mms.util.ConnectorType;
import io.netty.channel.Channel;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelPipeline;
import io.netty.handler.codec.http.HttpObjectAggregator;
import io.netty.handler.codec.http.HttpServerCodec;
import io.netty.handler.ssl.SslContext;

/**
 * byoc's replacement for multi-model-server 1.1.11's channel set-up (same name and constructor,
 * swapped into model-server.jar by the image build; see ../../../../../PATCHES.md).
 *
 * <p>The management port (on loopback) keeps MMS's own handlers. The public port gets
 * byoc.mms.PublicPort's pipeline instead of MMS's inference and management chain: SageMaker's
 * protocol and nothing else, every body passed to the model raw, every answer JSON.
 */
public class ServerInitializer extends ChannelInitializer<Channel> {

    private final ConnectorType connectorType;
    private final SslContext sslCtx;

    public ServerInitializer(SslContext sslCtx, ConnectorType type) {
        this.sslCtx = sslCtx;
        this.connectorType = type;
    }

    @Override
    public void initChannel(Channel ch) {
        ChannelPipeline pipeline = ch.pipeline();
        if (sslCtx != null) {
            pipeline.addLast("ssl", sslCtx.newHandler(ch.alloc()));
        }
        if (connectorType != ConnectorType.MANAGEMENT_CONNECTOR) { // BOTH included: never expose it
            PublicPort.initChannel(pipeline);
            return;
        }
        pipeline.addLast("http", new HttpServerCodec());
        pipeline.addLast("aggregator",
                new HttpObjectAggregator(ConfigManager.getInstance().getMaxRequestSize()));
        HttpRequestHandlerChain first = new ApiDescriptionRequestHandler(connectorType);
        first.setNextHandler(new ManagementRequestHandler(PluginsManager.getInstance().getManagementEndpoints()))
                .setNextHandler(new InvalidRequestHandler());
        pipeline.addLast("handler", new HttpRequestHandler(first));
    }
}
