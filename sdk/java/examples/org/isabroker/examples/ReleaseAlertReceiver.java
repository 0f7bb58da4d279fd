package org.isabroker.examples;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpHandler;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.function.Consumer;
import java.util.logging.Logger;
import org.isabroker.client.CloudEvent;
import org.isabroker.client.IsaBrokerClient;
import org.isabroker.client.IsaBrokerException;
import org.isabroker.client.crypto.BrokerKeysUnavailableException;
import org.isabroker.client.crypto.DeliveryOpenException;
import org.isabroker.client.crypto.DeliveryOpener;
import org.isabroker.client.crypto.RecipientKeys;
import org.isabroker.client.crypto.UnknownKeyException;
import org.isabroker.client.webhooks.ReceivedWebhook;
import org.isabroker.client.webhooks.WebhookReceiver;
import org.isabroker.client.webhooks.WebhookVerificationException;
import org.isabroker.client.webhooks.WebhookVerifier;

/**
 * The smallest correct receiver of release alerts: one endpoint that
 *
 * <ol>
 *   <li>verifies the Standard Webhooks signature over the raw body (any key held: rotation),
 *       and the timestamp (5 minutes);
 *   <li>opens the body when the subscription is encrypted: decrypts it with the agency's private
 *       keys and checks that the broker signed it for this delivery, to this agency;
 *   <li>de-duplicates on {@code webhook-id} (the same on every retry and replay);
 *   <li>hands the event to the case system, answers {@code 204} at once, and then acknowledges
 *       each duty the delivery carries ({@code isadutyid}).
 * </ol>
 *
 * Configuration (environment):
 *
 * <pre>
 * ISA_GATEWAY_URL      https://isa-broker.example
 * ISA_CLIENT_ID        your client (scope duties:ack)
 * ISA_CLIENT_SECRET
 * ISA_PARTY            your party id, e.g. eastborough-housing
 * ISA_WEBHOOK_KEYS     the subscription's whsec_ secret or whpk_ public key (space-separated
 *                      during a rotation: the new and the previous)
 * ISA_PRIVATE_KEYS     a file with your private encryption JWK(s), for encrypted subscriptions
 * PORT                 default 8080; the endpoint is POST /isa-webhook
 * </pre>
 *
 * In production keep the set of processed ids in your database (a unique key on the delivery
 * id, written in the same transaction as the event), not in memory, and acknowledge a duty when
 * the action it asks for is done rather than on receipt.
 */
public final class ReleaseAlertReceiver implements HttpHandler {
    private static final Logger LOG = Logger.getLogger("isa.receiver");
    private static final int MAX_BODY = 1_000_000;

    private final WebhookReceiver receiver;
    private final IsaBrokerClient broker;
    private final Consumer<CloudEvent> caseSystem;
    private final Set<String> processed = ConcurrentHashMap.newKeySet(); // use your database
    private final ExecutorService after = Executors.newSingleThreadExecutor();

    public ReleaseAlertReceiver(WebhookReceiver receiver, IsaBrokerClient broker, Consumer<CloudEvent> caseSystem) {
        this.receiver = receiver;
        this.broker = broker;
        this.caseSystem = caseSystem;
    }

    @Override
    public void handle(HttpExchange exchange) throws IOException {
        try (exchange) {
            if (!"POST".equals(exchange.getRequestMethod())) {
                exchange.sendResponseHeaders(405, -1);
                return;
            }
            byte[] body;
            try (InputStream in = exchange.getRequestBody()) {
                body = in.readNBytes(MAX_BODY + 1);
            }
            if (body.length > MAX_BODY) {
                exchange.sendResponseHeaders(413, -1);
                return;
            }
            ReceivedWebhook hook;
            try {
                hook = receiver.receive(exchange.getRequestHeaders()::getFirst, body);
            } catch (WebhookVerificationException e) {
                LOG.warning("refused a request: " + e.getMessage());      // not from the broker
                exchange.sendResponseHeaders(401, -1);
                return;
            } catch (UnknownKeyException | BrokerKeysUnavailableException e) {
                LOG.warning("cannot open it yet: " + e.getMessage());     // load the key; the broker retries
                exchange.sendResponseHeaders(503, -1);
                return;
            } catch (DeliveryOpenException e) {
                LOG.severe("refused a delivery (" + e.kind() + "): " + e.getMessage()); // never act on it
                exchange.sendResponseHeaders(400, -1);
                return;
            }
            if (processed.add(hook.webhookId())) {           // false: a duplicate, already stored
                try {
                    caseSystem.accept(hook.event());             // store it
                } catch (RuntimeException e) {
                    processed.remove(hook.webhookId());          // not stored: let the broker retry
                    LOG.severe("could not store delivery " + hook.webhookId() + ": " + e);
                    exchange.sendResponseHeaders(500, -1);
                    return;
                }
                List<String> duties = hook.event().dutyIds();
                if (!duties.isEmpty()) {
                    after.submit(() -> acknowledge(duties));
                }
            }
            exchange.sendResponseHeaders(204, -1);       // answer quickly, a duplicate too
        }
    }

    private void acknowledge(List<String> duties) {
        for (String duty : duties) {
            try {
                broker.acknowledgeDuty(duty, null);
                LOG.info("acknowledged duty " + duty);
            } catch (IsaBrokerException e) {
                LOG.warning("duty " + duty + " not acknowledged: " + e.getMessage()); // retry later
            }
        }
    }

    /** Starts the endpoint {@code POST /isa-webhook} on {@code address}. */
    public HttpServer start(InetSocketAddress address) throws IOException {
        HttpServer server = HttpServer.create(address, 0);
        server.createContext("/isa-webhook", this);
        server.setExecutor(Executors.newFixedThreadPool(4));
        server.start();
        return server;
    }

    /** Stops the acknowledgements still queued from being sent (after the server has stopped). */
    public void close() {
        after.shutdown();
    }

    public static void main(String[] args) throws IOException {
        URI gateway = URI.create(required("ISA_GATEWAY_URL"));
        IsaBrokerClient broker = IsaBrokerClient.builder(gateway)
                .clientSecret(required("ISA_CLIENT_ID"), required("ISA_CLIENT_SECRET"))
                .allowHttp("http".equals(gateway.getScheme())) // isa-broker dev only
                .build();
        WebhookVerifier verifier = WebhookVerifier.of(required("ISA_WEBHOOK_KEYS").trim().split("\\s+"));
        String keys = System.getenv("ISA_PRIVATE_KEYS");
        DeliveryOpener opener = keys == null ? null
                : new DeliveryOpener(required("ISA_PARTY"), RecipientKeys.load(Path.of(keys)), broker.brokerKeys());
        ReleaseAlertReceiver app = new ReleaseAlertReceiver(new WebhookReceiver(verifier, opener, opener != null),
                broker, event -> LOG.info("received " + event.type() + " " + event.id()));
        int port = Integer.parseInt(System.getenv().getOrDefault("PORT", "8080"));
        app.start(new InetSocketAddress(port));
        LOG.info("listening on :" + port + "/isa-webhook");
    }

    private static String required(String name) {
        String value = System.getenv(name);
        if (value == null || value.isBlank()) {
            throw new IllegalStateException("set " + name + " (see the class documentation)");
        }
        return value;
    }
}
