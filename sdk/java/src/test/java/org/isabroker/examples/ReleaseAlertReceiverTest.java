package org.isabroker.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.nimbusds.jose.jwk.Curve;
import com.nimbusds.jose.jwk.ECKey;
import com.nimbusds.jose.jwk.JWKSet;
import com.nimbusds.jose.jwk.gen.ECKeyGenerator;
import com.standardwebhooks.Webhook;
import com.sun.net.httpserver.HttpServer;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Instant;
import java.util.Base64;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.isabroker.client.CloudEvent;
import org.isabroker.client.FakeServer;
import org.isabroker.client.HttpClients;
import org.isabroker.client.IsaBrokerClient;
import org.isabroker.client.crypto.BrokerKeys;
import org.isabroker.client.crypto.DeliveryOpener;
import org.isabroker.client.crypto.RecipientKeys;
import org.isabroker.client.crypto.Sealer;
import org.isabroker.client.webhooks.WebhookReceiver;
import org.isabroker.client.webhooks.WebhookVerifier;
import org.junit.jupiter.api.Test;

/** The reference receiver of {@code examples/} with a synthetic broker: every answer it gives. */
class ReleaseAlertReceiverTest {
    private static final String PARTY = "eastborough-vawg";
    private static final String SECRET = "whsec_" + Base64.getEncoder().encodeToString("example secret, synthetic only..".getBytes());

    @Test
    void verifiesOpensDeduplicatesAndAcknowledges() throws Exception {
        ECKey agency = RecipientKeys.generate("vawg-2026-12");
        ECKey broker = new ECKeyGenerator(Curve.P_256).keyID("b1").generate();
        ECKey stranger = new ECKeyGenerator(Curve.P_256).keyID("b1").generate();
        List<CloudEvent> stored = new CopyOnWriteArrayList<>();
        try (FakeServer api = new FakeServer()) {
            api.on("POST /oauth/token", r -> FakeServer.Answer.json(200,
                    "{\"access_token\":\"t\",\"token_type\":\"Bearer\",\"expires_in\":300}"));
            api.on("POST /v1/duties/dut_1/acknowledge", r -> FakeServer.Answer.json(200, "{\"id\":\"dut_1\",\"status\":\"acknowledged\"}"));
            IsaBrokerClient client = IsaBrokerClient.builder(api.uri()).clientSecret("c", "s").allowHttp(true).build();
            DeliveryOpener opener = new DeliveryOpener(PARTY, new JWKSet(agency),
                    BrokerKeys.of("{\"keys\":[" + broker.toPublicJWK().toJSONString() + "]}"));
            ReleaseAlertReceiver app = new ReleaseAlertReceiver(
                    new WebhookReceiver(WebhookVerifier.of(SECRET), opener, true), client, stored::add);
            HttpServer server = app.start(new InetSocketAddress(InetAddress.getByName("127.0.0.1"), 0));
            try {
                URI endpoint = URI.create("http://127.0.0.1:" + server.getAddress().getPort() + "/isa-webhook");
                String genuine = Sealer.seal(Sealer.event("m1", "d1", PARTY, "dut_1"), agency, broker, "m1", "d1", PARTY, "ISA-EB-020@1.2");
                assertEquals(204, post(endpoint, "d1", genuine, SECRET));
                assertEquals(204, post(endpoint, "d1", genuine, SECRET), "a duplicate is answered, not processed");
                assertEquals(1, stored.size());
                assertEquals("m1", stored.get(0).id());
                for (int i = 0; i < 50 && api.requests("POST /v1/duties/dut_1/acknowledge").isEmpty(); i++) {
                    Thread.sleep(100);
                }
                assertEquals(1, api.requests("POST /v1/duties/dut_1/acknowledge").size(), "the duty is acknowledged once");

                String wrongSecret = "whsec_" + Base64.getEncoder().encodeToString(new byte[32]);
                assertEquals(401, post(endpoint, "d2", genuine, wrongSecret), "not signed with the subscription's key");
                String forged = Sealer.seal(Sealer.event("m2", "d2", PARTY, null), agency, stranger, "m2", "d2", PARTY, "x@1");
                assertEquals(400, post(endpoint, "d2", forged, SECRET), "not signed by the broker");
                assertEquals(400, post(endpoint, "d9", genuine, SECRET), "replayed under another webhook-id");
                ECKey other = RecipientKeys.generate("another-key");
                String toAnotherKey = Sealer.seal(Sealer.event("m3", "d3", PARTY, null), other, broker, "m3", "d3", PARTY, "x@1");
                assertEquals(503, post(endpoint, "d3", toAnotherKey, SECRET), "a key not loaded: the broker will retry");
                assertEquals(1, stored.size());
            } finally {
                server.stop(0);
                app.close();
            }
        }
    }

    private static int post(URI endpoint, String id, String body, String secret) throws Exception {
        long ts = Instant.now().getEpochSecond();
        String signature = new Webhook(secret).sign(id, ts, body);
        HttpRequest request = HttpRequest.newBuilder(endpoint)
                .header("content-type", "application/jose")
                .header("webhook-id", id)
                .header("webhook-timestamp", Long.toString(ts))
                .header("webhook-signature", signature)
                .POST(HttpRequest.BodyPublishers.ofString(body)).build();
        HttpClient http = HttpClients.defaultClient();
        int status = http.send(request, HttpResponse.BodyHandlers.discarding()).statusCode();
        assertTrue(status > 0);
        return status;
    }
}
