package org.isabroker.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.nimbusds.jose.jwk.ECKey;
import com.nimbusds.jose.jwk.JWKSet;
import com.sun.net.httpserver.HttpServer;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.stream.Collectors;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.isabroker.client.crypto.BrokerKeys;
import org.isabroker.client.crypto.DeliveryOpener;
import org.isabroker.client.crypto.OpenedDelivery;
import org.isabroker.client.crypto.RecipientKeys;
import org.isabroker.client.webhooks.ReceivedWebhook;
import org.isabroker.client.webhooks.WebhookReceiver;
import org.isabroker.client.webhooks.WebhookVerifier;
import org.isabroker.examples.ReleaseAlertReceiver;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.TestMethodOrder;

/**
 * The SDK against a real broker ({@code isa-broker dev}), described by the environment the SDK
 * harness sets: ISA_GATEWAY_URL, ISA_KAFKA_BOOTSTRAP_SERVERS, ISA_SENDER_*, ISA_RECIPIENT_*,
 * ISA_AGENCY_TOPIC, ISA_RELEASE_NOTICE_FILE. Skipped when ISA_GATEWAY_URL is not set.
 *
 * <p>The recipient registers an encryption key and subscribes by an encrypted v1 webhook (to a
 * receiver this test runs on 127.0.0.1), an encrypted v1a webhook (to the reference receiver
 * of {@code examples/}), its Kafka topic and its inbox; the sender publishes a release notice;
 * then each channel's delivery is verified, opened and checked, the inbox drained and
 * acknowledged, and the delivery's duty acknowledged.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class EndToEndTest {
    private static final Duration WAIT = Duration.ofSeconds(60);

    private Map<String, String> env;
    private IsaBrokerClient sender;
    private IsaBrokerClient recipient;
    private String party;
    private ECKey encryptionKey;
    private BrokerKeys brokerKeys;
    private HttpServer hookServer;
    private final BlockingQueue<Captured> hooks = new LinkedBlockingQueue<>();
    private HttpServer exampleServer;
    private volatile ReleaseAlertReceiver example;
    private final List<CloudEvent> exampleEvents = new CopyOnWriteArrayList<>();
    private final List<String> subscriptionIds = new ArrayList<>();
    private String webhookSecret;
    private PublishResult published;
    private CloudEvent webhookEvent;

    private static final class Captured {
        final Map<String, String> headers;
        final byte[] body;

        Captured(Map<String, String> headers, byte[] body) {
            this.headers = headers;
            this.body = body;
        }
    }

    @BeforeAll
    void connect() throws Exception {
        env = System.getenv();
        assumeTrue(env.get("ISA_GATEWAY_URL") != null, "ISA_GATEWAY_URL is not set: no broker to test against");
        URI gateway = URI.create(env.get("ISA_GATEWAY_URL"));
        sender = IsaBrokerClient.builder(gateway)
                .clientSecret(env.get("ISA_SENDER_CLIENT_ID"), env.get("ISA_SENDER_CLIENT_SECRET"))
                .allowHttp(true)
                .build();
        recipient = IsaBrokerClient.builder(gateway)
                .clientSecret(env.get("ISA_RECIPIENT_CLIENT_ID"), env.get("ISA_RECIPIENT_CLIENT_SECRET"))
                .allowHttp(true)
                .build();
        party = env.get("ISA_RECIPIENT_PARTY");

        InetAddress loopback = InetAddress.getByName("127.0.0.1");
        hookServer = HttpServer.create(new InetSocketAddress(loopback, 0), 0);
        hookServer.createContext("/hook", exchange -> {
            try (exchange; InputStream in = exchange.getRequestBody()) {
                Map<String, String> headers = exchange.getRequestHeaders().entrySet().stream()
                        .collect(Collectors.toMap(e -> e.getKey().toLowerCase(), e -> e.getValue().get(0)));
                hooks.add(new Captured(headers, in.readAllBytes()));
                exchange.sendResponseHeaders(204, -1);
            }
        });
        hookServer.start();
    }

    @AfterAll
    void stop() {
        if (recipient != null) {
            for (String id : subscriptionIds) {
                recipient.deleteSubscription(id);
            }
            assertTrue(recipient.subscriptions().stream().noneMatch(s -> subscriptionIds.contains(s.id())));
        }
        if (hookServer != null) {
            hookServer.stop(0);
        }
        if (exampleServer != null) {
            exampleServer.stop(0);
            if (example != null) {
                example.close();
            }
        }
    }

    @Test
    @Order(1)
    void tokensAndErrors() {
        String token = recipient.tokens().accessToken();
        assertEquals(token, recipient.tokens().accessToken(), "the token is cached");
        assertTrue(((ClientCredentials) sender.tokens()).clientId().startsWith(env.get("ISA_SENDER_PARTY")));
        // the recipient may not publish: a typed refusal
        InsufficientScopeException e = assertThrows(InsufficientScopeException.class,
                () -> recipient.publishReleaseNotice(Map.of("person", Map.of()), null));
        assertEquals("publish:release-notice", e.requiredScope());
        // a body that does not match the schema: the failing fields by pointer
        ValidationException v = assertThrows(ValidationException.class,
                () -> sender.publishReleaseNotice(Map.of("person", Map.of("prison_number", "A1234BC")), null));
        assertEquals(422, v.status());
        assertFalse(v.fields().isEmpty(), "pointers of the failing fields");
        assertThrows(NotFoundException.class, () -> recipient.delivery("msg_does_not_exist"));
    }

    @Test
    @Order(2)
    void subscribe() throws Exception {
        encryptionKey = RecipientKeys.generate("sdk-java-" + UUID.randomUUID().toString().substring(0, 8));
        EncryptionKey registered = recipient.registerEncryptionKey(encryptionKey);
        assertTrue(registered.current());
        assertEquals(encryptionKey.computeThumbprint().toString(), registered.thumbprint());
        assertTrue(recipient.encryptionKeys().stream().anyMatch(k -> k.kid().equals(encryptionKey.getKeyID())));
        brokerKeys = recipient.brokerKeys();
        assertFalse(brokerKeys.thumbprints().isEmpty());

        String base = "http://127.0.0.1:" + hookServer.getAddress().getPort();
        Subscription v1 = recipient.createSubscription(
                SubscriptionRequest.webhook(base + "/hook", "release-notice").encrypted());
        subscriptionIds.add(v1.id());
        assertEquals("v1", v1.signatureScheme());
        assertTrue(v1.encrypt());
        assertTrue(v1.secret().startsWith("whsec_"));
        webhookSecret = v1.secret();

        // the reference receiver of examples/, on a v1a (ed25519) encrypted subscription: its
        // endpoint listens first, and takes the subscription's public key once it is known
        JWKSet privateKeys = new JWKSet(encryptionKey);
        exampleServer = HttpServer.create(new InetSocketAddress(InetAddress.getByName("127.0.0.1"), 0), 0);
        exampleServer.createContext("/isa-webhook", exchange -> {
            if (example == null) {
                exchange.sendResponseHeaders(503, -1);
                exchange.close();
            } else {
                example.handle(exchange);
            }
        });
        exampleServer.start();
        Subscription v1a = recipient.createSubscription(SubscriptionRequest
                .webhook("http://127.0.0.1:" + exampleServer.getAddress().getPort() + "/isa-webhook", "release-notice")
                .signatureScheme("v1a").encrypted());
        subscriptionIds.add(v1a.id());
        assertTrue(v1a.publicKey().startsWith("whpk_"));
        example = new ReleaseAlertReceiver(
                new WebhookReceiver(WebhookVerifier.of(v1a.publicKey()), new DeliveryOpener(party, privateKeys, brokerKeys), true),
                recipient, exampleEvents::add);

        Subscription kafka = recipient.createSubscription(SubscriptionRequest.kafka("release-notice"));
        subscriptionIds.add(kafka.id());
        assertEquals(env.get("ISA_AGENCY_TOPIC"), kafka.kafkaTopic());

        Subscription inbox = recipient.createSubscription(SubscriptionRequest.inbox("release-notice"));
        subscriptionIds.add(inbox.id());

        List<String> mine = recipient.subscriptions().stream().map(Subscription::id).collect(Collectors.toList());
        assertTrue(mine.containsAll(subscriptionIds));
    }

    @Test
    @Order(3)
    void publish() throws Exception {
        String body = Files.readString(Path.of(env.get("ISA_RELEASE_NOTICE_FILE")));
        String key = UUID.randomUUID().toString();
        published = sender.publishReleaseNotice(body, PublishOptions.idempotencyKey(key));
        assertEquals("accepted", published.status());
        assertFalse(published.replayed());
        assertTrue(published.parties().contains(party), "the recipient is entitled: " + published.parties());
        // the same request with the same key: the original answer, nothing new stored
        PublishResult again = sender.publishReleaseNotice(body, PublishOptions.idempotencyKey(key));
        assertTrue(again.replayed());
        assertEquals(published.id(), again.id());
        // the same key with another body is refused
        JsonNode changed = Json.parse(body);
        ((com.fasterxml.jackson.databind.node.ObjectNode) changed.get("person")).put("given_name", "Changed");
        ConflictException conflict = assertThrows(ConflictException.class,
                () -> sender.publishReleaseNotice(changed, PublishOptions.idempotencyKey(key)));
        assertEquals("idempotency_key_reused", conflict.code());
    }

    @Test
    @Order(4)
    void webhook() throws Exception {
        Captured hook = hooks.poll(WAIT.toSeconds(), TimeUnit.SECONDS);
        assertNotNull(hook, "no webhook arrived");
        assertTrue(DeliveryOpener.isSealed(hook.headers.get("content-type")), hook.headers.get("content-type"));
        WebhookReceiver receiver = new WebhookReceiver(WebhookVerifier.of(webhookSecret),
                new DeliveryOpener(party, new JWKSet(encryptionKey), brokerKeys), true);
        ReceivedWebhook received = receiver.receive(hook.headers::get, hook.body);
        assertTrue(received.encrypted());
        webhookEvent = received.event();
        assertEquals(published.id(), webhookEvent.id());
        assertEquals(party, webhookEvent.recipient());
        assertEquals(hook.headers.get("webhook-id"), webhookEvent.deliveryId());
        assertEquals("org.isa-broker.release-notice.v1", webhookEvent.type());
        assertEquals(encryptionKey.getKeyID(), received.opened().kid());
        assertTrue(webhookEvent.data().has("person"), "the projection carries the person");
        assertFalse(webhookEvent.data().path("destination").has("address"),
                "a VAWG service never receives the release address");
    }

    @Test
    @Order(5)
    void agencyTopic() {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, env.get("ISA_KAFKA_BOOTSTRAP_SERVERS"));
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        DeliveryOpener opener = new DeliveryOpener(party, new JWKSet(encryptionKey), brokerKeys);
        OpenedDelivery found = null;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            String topic = env.get("ISA_AGENCY_TOPIC");
            Instant deadline = Instant.now().plus(WAIT);
            List<TopicPartition> partitions = new ArrayList<>();
            while (partitions.isEmpty() && Instant.now().isBefore(deadline)) {
                consumer.partitionsFor(topic, Duration.ofSeconds(10))
                        .forEach(p -> partitions.add(new TopicPartition(topic, p.partition())));
            }
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            while (found == null && Instant.now().isBefore(deadline)) {
                for (ConsumerRecord<byte[], byte[]> record : consumer.poll(Duration.ofSeconds(1))) {
                    Header messageHeader = record.headers().lastHeader(DeliveryOpener.RECORD_MESSAGE_HEADER);
                    if (messageHeader == null
                            || !published.id().equals(new String(messageHeader.value(), StandardCharsets.US_ASCII))) {
                        continue;
                    }
                    found = opener.openRecord(record.value(), name -> {
                        Header h = record.headers().lastHeader(name);
                        return h == null ? null : h.value();
                    });
                    assertEquals(webhookEvent.subject(), new String(record.key(), StandardCharsets.UTF_8));
                }
            }
        }
        assertNotNull(found, "no record of the message on the agency topic");
        assertEquals(published.id(), found.event().id());
        assertEquals(found.deliveryId(), found.event().deliveryId());
        assertEquals(webhookEvent.data(), found.event().data(), "the same projection on every channel");
    }

    @Test
    @Order(6)
    void inbox() {
        Inbox inbox = recipient.inbox().waitSeconds(1).limit(50).stopWhenEmpty().open();
        List<InboxEntry> entries = new ArrayList<>();
        Instant deadline = Instant.now().plus(WAIT);
        while (entries.stream().noneMatch(e -> e.isMessage() && published.id().equals(e.event().id()))
                && Instant.now().isBefore(deadline)) {
            inbox.stream().forEach(entries::add);
        }
        InboxEntry mine = entries.stream().filter(e -> e.isMessage() && published.id().equals(e.event().id()))
                .findFirst().orElseThrow(() -> new AssertionError("no inbox entry for the message"));
        assertEquals(mine.deliveryId(), mine.event().deliveryId());
        inbox.acknowledge();
        long last = entries.get(entries.size() - 1).cursor();
        // acknowledged: a read from this client's cursor starts after it
        InboxPage after = recipient.readInbox(null, 10, 0);
        assertEquals(last, after.acknowledged());
        assertTrue(after.entries().stream().noneMatch(e -> e.cursor() <= last));
        // long-polling an empty inbox comes back empty after the wait
        Instant start = Instant.now();
        assertTrue(recipient.readInbox(null, 10, 1).entries().isEmpty());
        assertTrue(Duration.between(start, Instant.now()).toMillis() >= 900, "the long poll waited");
    }

    @Test
    @Order(7)
    void dutyAndDeliveries() throws Exception {
        List<String> duties = webhookEvent.dutyIds();
        assertFalse(duties.isEmpty(), "ISA-EB-020's perpetrator-release-alert declares a duty");
        assertTrue(webhookEvent.dutyDue().isPresent());
        Duty duty = recipient.duty(duties.get(0));
        assertEquals(published.id(), duty.messageId());
        String action = duty.allowedActions().isEmpty() ? null : duty.allowedActions().get(0);
        Duty acknowledged = recipient.acknowledgeDuty(duty.id(), action);
        assertEquals("acknowledged", acknowledged.status());
        // acknowledging again is safe: the first acknowledgement is returned
        assertEquals(acknowledged.acknowledgedAt(), recipient.acknowledgeDuty(duty.id(), action).acknowledgedAt());
        assertTrue(recipient.duties("open", published.id()).duties().isEmpty());

        // the reference receiver got its own (v1a) delivery, and acknowledged the duty as well
        waitFor(() -> exampleEvents.stream().anyMatch(e -> published.id().equals(e.id())), "the example receiver");

        // every channel delivered
        waitFor(() -> {
            List<Delivery> ds = ours(recipient.deliveries(DeliveryQuery.all().messageId(published.id())));
            return ds.size() == subscriptionIds.size() && ds.stream().allMatch(d -> "delivered".equals(d.status()));
        }, "a delivery on each subscription, delivered");
        List<Delivery> ds = ours(recipient.deliveries(DeliveryQuery.all().messageId(published.id())));
        assertEquals(List.of("inbox", "kafka", "webhook", "webhook"),
                ds.stream().map(Delivery::channel).sorted().collect(Collectors.toList()));
        Delivery hook = ds.stream().filter(d -> d.subscriptionId().equals(subscriptionIds.get(0))).findFirst()
                .orElseThrow();
        Delivery one = recipient.delivery(hook.id());
        assertFalse(one.history().isEmpty(), "a webhook delivery has its attempts");
        assertEquals(204, one.history().get(0).statusCode());
        assertTrue(recipient.deadLetters(DeliveryQuery.all().limit(10)).stream()
                .noneMatch(d -> published.id().equals(d.messageId())));
        // replaying what is not dead-lettered is a conflict
        ConflictException c = assertThrows(ConflictException.class, () -> recipient.replayDeadLetter(one.id()));
        assertEquals("conflict", c.code());
    }

    private List<Delivery> ours(List<Delivery> deliveries) {
        return deliveries.stream().filter(d -> subscriptionIds.contains(d.subscriptionId())).collect(Collectors.toList());
    }

    private static void waitFor(BooleanSupplier condition, String what) throws InterruptedException {
        Instant deadline = Instant.now().plus(WAIT);
        while (!condition.getAsBoolean()) {
            if (Instant.now().isAfter(deadline)) {
                throw new AssertionError("timed out waiting for " + what);
            }
            Thread.sleep(200);
        }
    }
}
