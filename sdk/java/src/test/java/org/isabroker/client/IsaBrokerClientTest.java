package org.isabroker.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.net.URI;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class IsaBrokerClientTest {
    private FakeServer server;
    private IsaBrokerClient client;
    private final AtomicInteger tokens = new AtomicInteger();

    @BeforeEach
    void start() {
        server = new FakeServer().on("POST /oauth/token", r -> FakeServer.Answer.json(200,
                "{\"access_token\":\"tok-" + tokens.incrementAndGet() + "\",\"token_type\":\"Bearer\",\"expires_in\":300}"));
        client = IsaBrokerClient.builder(server.uri()).clientSecret("hmp-northgate.abc", "cs_x").allowHttp(true).build();
    }

    @AfterEach
    void stop() {
        server.close();
    }

    private static final String ACCEPTED = "{\"id\":\"6b341713-4c72-490b-b085-530ac98ea114\",\"status\":\"accepted\","
            + "\"message_type\":\"release-notice\",\"lifecycle\":\"original\",\"refers_to\":null,\"version\":1,"
            + "\"recipients\":[{\"party\":\"eastborough-vawg\",\"fields\":[\"release.date\"],"
            + "\"agreements\":[{\"id\":\"ISA-EB-020\",\"version\":\"1.2\"}],\"purposes\":[\"victim-safety\"],"
            + "\"grants\":[],\"withheld\":[]}],\"agreements\":[],\"not_applied\":[],\"warnings\":[],\"timeliness\":null}";

    @Test
    void publishSendsTheKeyAndPurposes() {
        server.on("POST /v1/messages/release-notice", r -> new FakeServer.Answer(202,
                Map.of("Content-Type", "application/json", "Idempotent-Replayed", "true"), ACCEPTED));
        PublishResult result = client.publishReleaseNotice(Map.of("person", Map.of("prison_number", "A1234BC")),
                PublishOptions.idempotencyKey("key-1").purposes("resettlement", "victim-safety"));
        assertEquals("6b341713-4c72-490b-b085-530ac98ea114", result.id());
        assertEquals(List.of("eastborough-vawg"), result.parties());
        assertEquals(List.of("victim-safety"), result.recipients().get(0).purposes());
        assertTrue(result.replayed());
        assertEquals("key-1", result.idempotencyKey());
        FakeServer.Request r = server.requests("POST /v1/messages/release-notice").get(0);
        assertEquals("key-1", r.header("idempotency-key"));
        assertEquals("Bearer tok-1", r.header("authorization"));
        assertEquals("application/json", r.header("content-type"));
        assertEquals("purpose=resettlement&purpose=victim-safety", r.uri.getRawQuery());
        assertEquals("A1234BC", Json.parse(r.body).path("person").path("prison_number").asText());
    }

    @Test
    void withoutAKeyEachCallMakesOne() {
        server.on("POST /v1/messages/release-notice", r -> FakeServer.Answer.json(202, ACCEPTED));
        PublishResult a = client.publishReleaseNotice("{\"person\":{}}", null);
        PublishResult b = client.publishReleaseNotice("{\"person\":{}}", null);
        assertFalse(a.replayed());
        assertEquals(36, a.idempotencyKey().length());
        assertFalse(a.idempotencyKey().equals(b.idempotencyKey()));
        assertEquals("{\"person\":{}}", server.requests("POST /v1/messages/release-notice").get(0).text(),
                "JSON text is sent as it is");
    }

    @Test
    void a401IsRepeatedOnceWithANewToken() {
        AtomicInteger calls = new AtomicInteger();
        server.on("GET /v1/subscriptions", r -> calls.incrementAndGet() == 1
                ? FakeServer.Answer.problem(401, "{\"status\":401,\"code\":\"unauthenticated\",\"title\":\"t\",\"detail\":\"d\"}", Map.of())
                : FakeServer.Answer.json(200, "[]"));
        assertEquals(List.of(), client.subscriptions());
        List<String> auth = server.requests("GET /v1/subscriptions").stream().map(r -> r.header("authorization"))
                .collect(Collectors.toList());
        assertEquals(List.of("Bearer tok-1", "Bearer tok-2"), auth);
        // a second 401 in a row is thrown
        server.on("GET /v1/subscriptions", r -> FakeServer.Answer.problem(401,
                "{\"status\":401,\"code\":\"unauthenticated\",\"title\":\"t\",\"detail\":\"d\"}", Map.of()));
        assertThrows(UnauthenticatedException.class, client::subscriptions);
    }

    @Test
    void refusalsAreTyped() {
        server.on("POST /v1/messages/release-notice", r -> FakeServer.Answer.problem(429,
                "{\"status\":429,\"code\":\"rate_limited\",\"title\":\"Too many requests\",\"detail\":\"d\",\"retry_after\":3}",
                Map.of("Retry-After", "3")));
        RateLimitedException e = assertThrows(RateLimitedException.class, () -> client.publish("release-notice", Map.of(), null));
        assertEquals(3, e.retryAfter().getAsInt());
        server.on("GET /v1/deliveries", r -> new FakeServer.Answer(502, Map.of("Content-Type", "text/html"),
                "<html>Bad gateway</html>"));
        ServerException s = assertThrows(ServerException.class, () -> client.deliveries(DeliveryQuery.all()));
        assertEquals("http_error", s.code());
        assertEquals(502, s.status());
        assertEquals("<html>Bad gateway</html>", s.detail());
    }

    @Test
    void deliveriesDutiesAndDeadLetters() {
        String delivery = "{\"id\":\"msg_1\",\"message_id\":\"m1\",\"message_type\":\"release-notice\","
                + "\"subscription_id\":\"s1\",\"channel\":\"webhook\",\"status\":\"dead_lettered\",\"fields\":[\"release.date\"],"
                + "\"attempts\":8,\"last_status_code\":500,\"last_error\":\"HTTP 500\",\"next_attempt_at\":null,"
                + "\"created_at\":\"2026-11-25T10:56:36.602839Z\",\"updated_at\":\"2026-11-26T17:41:08.337590Z\","
                + "\"history\":[{\"at\":\"2026-11-25T10:56:36.610112Z\",\"status_code\":500,\"error\":\"HTTP 500\",\"duration_ms\":38.0}]}";
        server.on("GET /v1/dead-letters", r -> FakeServer.Answer.json(200, "[" + delivery + "]"));
        server.on("POST /v1/dead-letters/replay", r -> FakeServer.Answer.json(202, "{\"replayed\":[\"msg_1\"]}"));
        server.on("POST /v1/dead-letters/msg_1/replay", r -> FakeServer.Answer.json(202, "{\"replayed\":[\"msg_1\"]}"));
        List<Delivery> dead = client.deadLetters(DeliveryQuery.all().subscriptionId("s1").limit(5));
        assertEquals(8, dead.get(0).attempts());
        assertEquals(Instant.parse("2026-11-25T10:56:36.602839Z"), dead.get(0).createdAt());
        assertEquals(500, dead.get(0).history().get(0).statusCode());
        assertEquals("subscription_id=s1&limit=5", server.requests("GET /v1/dead-letters").get(0).uri.getRawQuery());
        assertEquals(List.of("msg_1"), client.replayDeadLetter("msg_1"));
        assertEquals(List.of("msg_1"), client.replayDeadLetters("s1", Instant.parse("2026-11-25T00:00:00Z"), null));
        JsonNode replayBody = Json.parse(server.requests("POST /v1/dead-letters/replay").get(0).body);
        assertEquals("s1", replayBody.get("subscription_id").asText());
        assertEquals("2026-11-25T00:00:00Z", replayBody.get("since").asText());
        assertFalse(replayBody.has("until"));

        String duty = "{\"id\":\"dut_1\",\"message_id\":\"m1\",\"message_type\":\"release-notice\",\"sender\":\"hmp-northgate\","
                + "\"recipient\":\"eastborough-vawg\",\"agreement\":\"ISA-EB-020@1.2\",\"flow\":\"perpetrator-release-alert\","
                + "\"rule\":\"within PT24H\",\"escalate_to\":[],\"due_at\":\"2026-12-03T09:00:00Z\",\"status\":\"acknowledged\","
                + "\"overdue\":false,\"created_at\":\"2026-12-02T09:00:00Z\",\"acknowledged_at\":\"2026-12-02T14:12:40Z\","
                + "\"acknowledged_by\":\"eastborough-vawg.abc\",\"action\":\"victim_contacted\",\"late\":false,"
                + "\"escalated_at\":null,\"allowed_actions\":[\"victim_contacted\"]}";
        server.on("POST /v1/duties/dut_1/acknowledge", r -> FakeServer.Answer.json(200, duty));
        server.on("GET /v1/duties", r -> FakeServer.Answer.json(200, "{\"duties\":[" + duty + "],\"next_offset\":null}"));
        Duty acked = client.acknowledgeDuty("dut_1", "victim_contacted");
        assertEquals("acknowledged", acked.status());
        assertEquals(Instant.parse("2026-12-03T09:00:00Z"), acked.dueAt());
        assertEquals("{\"action\":\"victim_contacted\"}", server.requests("POST /v1/duties/dut_1/acknowledge").get(0).text());
        Duty.Page page = client.duties("open", "m1");
        assertEquals(1, page.duties().size());
        assertNull(page.nextOffset());
        assertEquals("status=open&message_id=m1", server.requests("GET /v1/duties").get(0).uri.getRawQuery());
    }

    private static String entry(long cursor) {
        return "{\"cursor\":" + cursor + ",\"kind\":\"message\",\"delivery_id\":\"msg_" + cursor + "\",\"event\":"
                + "{\"specversion\":\"1.0\",\"id\":\"m" + cursor + "\",\"type\":\"org.isa-broker.release-notice.v1\","
                + "\"isadeliveryid\":\"msg_" + cursor + "\",\"isadutyid\":\"dut_a,dut_b\","
                + "\"isadutydue\":\"2026-12-03T09:00:00Z\",\"data\":{\"release\":{\"date\":\"2026-12-01\"}}}}";
    }

    @Test
    void theInboxIteratesPagesAndAcknowledges() {
        AtomicInteger reads = new AtomicInteger();
        server.on("GET /v1/inbox", r -> {
            switch (reads.incrementAndGet()) {
                case 1:
                    return FakeServer.Answer.json(200, "{\"entries\":[" + entry(10) + "," + entry(12) + "],\"next_cursor\":12,\"acknowledged\":7}");
                case 2:
                    return FakeServer.Answer.json(200, "{\"entries\":[" + entry(15) + "],\"next_cursor\":15,\"acknowledged\":7}");
                default:
                    return FakeServer.Answer.json(200, "{\"entries\":[],\"next_cursor\":15,\"acknowledged\":7}");
            }
        });
        server.on("POST /v1/inbox/ack", r -> FakeServer.Answer.json(200, "{\"previous\":7,\"acknowledged\":15}"));
        Inbox inbox = client.inbox().waitSeconds(2).limit(2).stopWhenEmpty().open();
        List<InboxEntry> entries = inbox.stream().collect(Collectors.toList());
        assertEquals(List.of(10L, 12L, 15L), entries.stream().map(InboxEntry::cursor).collect(Collectors.toList()));
        InboxEntry first = entries.get(0);
        assertTrue(first.isMessage());
        assertEquals("msg_10", first.deliveryId());
        assertEquals(List.of("dut_a", "dut_b"), first.event().dutyIds());
        assertEquals(Instant.parse("2026-12-03T09:00:00Z"), first.event().dutyDue().orElseThrow());
        assertEquals("2026-12-01", first.event().data().path("release").path("date").asText());
        List<String> queries = server.requests("GET /v1/inbox").stream().map(r -> r.uri.getRawQuery())
                .collect(Collectors.toList());
        assertEquals(List.of("limit=2&wait=2", "after=12&limit=2&wait=2", "after=15&limit=2&wait=2"), queries);
        inbox.acknowledge();
        assertEquals("{\"cursor\":15}", server.requests("POST /v1/inbox/ack").get(0).text());
        assertEquals(15L, inbox.position());
    }

    @Test
    void subscriptionsAndKeys() throws Exception {
        server.on("POST /v1/subscriptions", r -> FakeServer.Answer.json(201, "{\"id\":\"s1\",\"message_types\":[\"release-notice\"],"
                + "\"channel\":\"kafka\",\"webhook\":null,\"kafka_topic\":\"isa.agency.eastborough-vawg.v1\",\"status\":\"active\","
                + "\"status_reason\":null,\"created_at\":\"2026-11-25T11:02:10.410227Z\",\"signature_scheme\":null,"
                + "\"public_key\":null,\"previous_secret_until\":null,\"filters\":null,\"encrypt\":true,\"secret\":null,"
                + "\"kafka_credential\":{\"username\":\"agency-eastborough-vawg\",\"password\":\"pw\",\"mechanism\":\"SCRAM-SHA-512\","
                + "\"topic\":\"isa.agency.eastborough-vawg.v1\",\"group_prefix\":\"eastborough-vawg.\"}}"));
        Subscription s = client.createSubscription(SubscriptionRequest.kafka("release-notice"));
        assertEquals("eastborough-vawg.", s.kafkaCredential().groupPrefix());
        assertFalse(s.kafkaCredential().toString().contains("pw"), "the password is never printed");
        assertEquals("{\"message_types\":[\"release-notice\"],\"channel\":\"kafka\"}",
                server.requests("POST /v1/subscriptions").get(0).text());
        client.createSubscription(SubscriptionRequest.webhook("https://vawg.example/hook", "release-notice", "licence-recall")
                .signatureScheme("v1a").encrypted());
        JsonNode body = Json.parse(server.requests("POST /v1/subscriptions").get(1).body);
        assertEquals("https://vawg.example/hook", body.path("webhook").path("url").asText());
        assertEquals("v1a", body.path("signature_scheme").asText());
        assertTrue(body.path("encrypt").asBoolean());
        assertThrows(IllegalStateException.class, () -> SubscriptionRequest.inbox("release-notice").encrypted());

        server.on("POST /v1/encryption-keys", r -> FakeServer.Answer.json(201, "{\"kid\":\"k1\",\"thumbprint\":\"t\","
                + "\"jwk\":{},\"created_at\":\"2026-11-25T11:02:10Z\",\"created_by\":\"c\",\"retired_at\":null,\"current\":true}"));
        var key = org.isabroker.client.crypto.RecipientKeys.generate("k1");
        assertTrue(client.registerEncryptionKey(key).current());
        JsonNode jwk = Json.parse(server.requests("POST /v1/encryption-keys").get(0).body).path("jwk");
        assertEquals("k1", jwk.path("kid").asText());
        assertFalse(jwk.has("d"), "the private key is never sent");
    }

    @Test
    void plainHttpNeedsAllowHttp() {
        assertThrows(IllegalArgumentException.class,
                () -> IsaBrokerClient.builder(URI.create("http://isa-broker.example")).clientSecret("c", "s").build());
        assertThrows(IllegalStateException.class, () -> IsaBrokerClient.builder(URI.create("https://isa-broker.example")).build());
    }
}
