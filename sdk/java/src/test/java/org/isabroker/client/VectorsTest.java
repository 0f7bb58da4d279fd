package org.isabroker.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.nimbusds.jose.jwk.JWKSet;
import java.nio.charset.StandardCharsets;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.stream.Stream;
import org.isabroker.client.crypto.BrokerKeys;
import org.isabroker.client.crypto.DeliveryOpenException;
import org.isabroker.client.crypto.DeliveryOpener;
import org.isabroker.client.crypto.OpenedDelivery;
import org.isabroker.client.webhooks.VerifiedWebhook;
import org.isabroker.client.webhooks.WebhookVerificationException;
import org.isabroker.client.webhooks.WebhookVerifier;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * Every case of the shared test vectors ({@code sdk/test-vectors}): webhook signatures,
 * sealed deliveries and problem answers, each one a test of its own.
 */
class VectorsTest {

    private static List<JsonNode> cases(JsonNode file) {
        List<JsonNode> out = new ArrayList<>();
        file.get("cases").forEach(out::add);
        return out;
    }

    @TestFactory
    Stream<DynamicTest> webhooks() throws Exception {
        JsonNode file = TestVectors.load("webhooks.json");
        return cases(file).stream().map(c -> DynamicTest.dynamicTest("webhooks.json " + c.get("name").asText(), () -> {
            WebhookVerifier.Builder b = WebhookVerifier.builder()
                    .tolerance(Duration.ofSeconds(c.get("tolerance").asLong()))
                    .clock(Clock.fixed(Instant.ofEpochSecond(c.get("now").asLong()), ZoneOffset.UTC));
            c.get("keys").forEach(k -> b.key(k.asText()));
            WebhookVerifier verifier = b.build();
            Map<String, String> headers = new HashMap<>();
            c.get("headers").properties().forEach(e -> headers.put(e.getKey(), e.getValue().asText()));
            byte[] body = c.get("body").asText().getBytes(StandardCharsets.UTF_8);
            if (c.get("valid").asBoolean()) {
                VerifiedWebhook v = verifier.verify(headers, body);
                assertEquals(headers.get("webhook-id"), v.id());
            } else {
                WebhookVerificationException e = assertThrows(WebhookVerificationException.class,
                        () -> verifier.verify(headers, body));
                assertEquals(c.get("error").asText(), e.kind().name().toLowerCase(Locale.ROOT), e.getMessage());
            }
        }));
    }

    @TestFactory
    Stream<DynamicTest> records() throws Exception {
        JsonNode file = TestVectors.load("records.json");
        String recipient = file.get("recipient").asText();
        JWKSet privateKeys = JWKSet.parse(file.get("recipient_private_jwks").toString());
        BrokerKeys brokerKeys = BrokerKeys.of(file.get("broker_delivery_signing_jwks").toString());
        DeliveryOpener opener = new DeliveryOpener(recipient, privateKeys, brokerKeys);
        return cases(file).stream().map(c -> DynamicTest.dynamicTest("records.json " + c.get("name").asText(), () -> {
            byte[] token = c.get("token").asText().getBytes(StandardCharsets.US_ASCII);
            JsonNode context = c.get("context");
            String messageId = Json.text(context, "message_id");
            String deliveryId = Json.text(context, "delivery_id");
            String kind = c.get("kind").asText();
            if (!kind.equals("record") && !kind.equals("webhook")) {
                fail("unknown kind " + kind);
            }
            try {
                OpenedDelivery opened;
                if (kind.equals("record")) {
                    Map<String, byte[]> headers = new HashMap<>();
                    headers.put(DeliveryOpener.RECORD_MESSAGE_HEADER, messageId.getBytes(StandardCharsets.US_ASCII));
                    headers.put(DeliveryOpener.RECORD_DELIVERY_HEADER, deliveryId.getBytes(StandardCharsets.US_ASCII));
                    opened = opener.openRecord(token, headers);
                } else {
                    opened = opener.openWebhook(token, deliveryId);
                    assertEquals(messageId, opened.event().id(), "the CloudEvent id the receiver expects");
                }
                assertTrue(c.get("valid").asBoolean(), "opened, but the case expects " + c.get("error"));
                assertNull(Json.text(c, "error"));
                assertEquals(c.get("event"), opened.event().json());
                assertEquals(deliveryId, opened.deliveryId());
                assertEquals(messageId, opened.messageId());
                assertEquals(recipient, opened.recipient());
                assertTrue(brokerKeys.thumbprints().containsKey(opened.signedBy()));
            } catch (DeliveryOpenException e) {
                if (c.get("valid").asBoolean()) {
                    throw new AssertionError("a valid case was refused: " + e.getMessage(), e);
                }
                assertEquals(c.get("error").asText(), e.kind().name().toLowerCase(Locale.ROOT), e.getMessage());
                assertTrue(c.get("event").isNull());
            }
        }));
    }

    @TestFactory
    Stream<DynamicTest> problems() throws Exception {
        JsonNode file = TestVectors.load("problems.json");
        Clock clock = Clock.fixed(Instant.parse("2026-01-15T09:30:00Z"), ZoneOffset.UTC);
        return cases(file).stream().map(c -> DynamicTest.dynamicTest("problems.json " + c.get("name").asText(), () -> {
            Map<String, String> headers = new HashMap<>();
            c.get("headers").properties().forEach(e -> headers.put(e.getKey().toLowerCase(Locale.ROOT),
                    e.getValue().asText()));
            int status = c.get("status").asInt();
            byte[] body = Json.bytes(c.get("body"));
            ProblemException p = ProblemException.from(status, name -> headers.get(name.toLowerCase(Locale.ROOT)),
                    body, clock);
            JsonNode expect = c.get("expect");
            assertEquals(expect.get("code").asText(), p.code());
            assertEquals(expect.get("status").asInt(), p.status());
            assertEquals(expect.get("title").asText(), p.title());
            assertEquals(expect.get("detail").asText(), p.detail());
            if (expect.get("retry_after").isNull()) {
                assertTrue(p.retryAfter().isEmpty(), "no retry_after expected");
            } else {
                assertEquals(expect.get("retry_after").asInt(), p.retryAfter().getAsInt());
            }
            List<String> fields = new ArrayList<>();
            expect.get("fields").forEach(f -> fields.add(f.asText()));
            assertEquals(fields, p.fields());
            assertEquals(Json.text(expect, "clause"), p.clause());
            assertEquals(c.get("body"), p.body());
            // and the subclass a program catches
            switch (p.code()) {
                case "validation_failed":
                    assertInstanceOf(ValidationException.class, p);
                    break;
                case "sharing_refused":
                    assertInstanceOf(SharingRefusedException.class, p);
                    assertEquals(Json.text(c.get("body"), "reason"), p.reason());
                    break;
                case "unauthenticated":
                    assertInstanceOf(UnauthenticatedException.class, p);
                    break;
                case "insufficient_scope":
                    assertInstanceOf(InsufficientScopeException.class, p);
                    break;
                case "rate_limited":
                    assertInstanceOf(RateLimitedException.class, p);
                    break;
                default:
                    if (status == 404) {
                        assertInstanceOf(NotFoundException.class, p);
                    } else if (status == 409) {
                        assertInstanceOf(ConflictException.class, p);
                    }
            }
        }));
    }
}
