package org.isabroker.client.webhooks;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.standardwebhooks.Webhook;
import java.nio.charset.StandardCharsets;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.Signature;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.Arrays;
import java.util.Base64;
import java.util.Map;
import org.junit.jupiter.api.Test;

class WebhookVerifierTest {
    private static final long TS = 1768469400L;
    private static final byte[] BODY = "{\"specversion\":\"1.0\",\"id\":\"m1\"}".getBytes(StandardCharsets.UTF_8);
    private static final String OLD = "whsec_" + Base64.getEncoder().encodeToString(new byte[32]);
    private static final String NEW = "whsec_" + Base64.getEncoder().encodeToString("another secret of 32 bytes.....".getBytes());

    private static Clock at(long seconds) {
        return Clock.fixed(Instant.ofEpochSecond(seconds), ZoneOffset.UTC);
    }

    private static String v1(String secret) throws Exception {
        return new Webhook(secret).sign("msg_1", TS, new String(BODY, StandardCharsets.UTF_8));
    }

    @Test
    void rotationAcceptsEitherKeyAndTheClockIsInjected() throws Exception {
        String header = v1(NEW) + " " + v1(OLD);
        Map<String, String> headers = Map.of("Webhook-Id", "msg_1", "Webhook-Timestamp", Long.toString(TS),
                "Webhook-Signature", header);
        WebhookVerifier old = WebhookVerifier.builder().key(OLD).clock(at(TS + 10)).build();
        assertEquals("msg_1", old.verify(headers, BODY).id());
        WebhookVerifier both = WebhookVerifier.builder().key("whsec_" + Base64.getEncoder().encodeToString(new byte[]{1}))
                .key(NEW).clock(at(TS)).build();
        assertEquals(1, both.verify(headers, BODY).keyIndex());
        WebhookVerifier late = WebhookVerifier.builder().key(OLD).clock(at(TS + 301)).build();
        assertEquals(WebhookVerificationException.Kind.TIMESTAMP,
                assertThrows(WebhookVerificationException.class, () -> late.verify(headers, BODY)).kind());
        WebhookVerifier lenient = WebhookVerifier.builder().key(OLD).tolerance(Duration.ofMinutes(10)).clock(at(TS + 301)).build();
        lenient.verify(headers, BODY);
        byte[] tampered = Arrays.copyOf(BODY, BODY.length);
        tampered[3] = 'X';
        assertEquals(WebhookVerificationException.Kind.SIGNATURE,
                assertThrows(WebhookVerificationException.class, () -> old.verify(headers, tampered)).kind());
        assertEquals(WebhookVerificationException.Kind.SIGNATURE, assertThrows(WebhookVerificationException.class,
                () -> old.verify(Map.of("webhook-timestamp", Long.toString(TS)), BODY)).kind());
        assertEquals(WebhookVerificationException.Kind.TIMESTAMP, assertThrows(WebhookVerificationException.class,
                () -> old.verify("msg_1", "soon", header, BODY)).kind());
    }

    @Test
    void v1aVerifiesWithTheWhpkKey() throws Exception {
        KeyPair pair = KeyPairGenerator.getInstance("Ed25519").generateKeyPair();
        byte[] spki = pair.getPublic().getEncoded();
        String whpk = "whpk_" + Base64.getEncoder().encodeToString(Arrays.copyOfRange(spki, spki.length - 32, spki.length));
        Signature signer = Signature.getInstance("Ed25519");
        signer.initSign(pair.getPrivate());
        signer.update(("msg_1." + TS + ".").getBytes(StandardCharsets.UTF_8));
        signer.update(BODY);
        String header = "v1a," + Base64.getEncoder().encodeToString(signer.sign());
        VerifiedWebhook v = WebhookVerifier.builder().key(whpk).clock(at(TS)).build().verify("msg_1", Long.toString(TS), header, BODY);
        assertEquals("v1a", v.scheme());
        assertThrows(WebhookVerificationException.class,
                () -> WebhookVerifier.builder().key(OLD).clock(at(TS)).build().verify("msg_1", Long.toString(TS), header, BODY));
    }

    @Test
    void keysAreCheckedStrictly() {
        assertThrows(IllegalArgumentException.class, () -> WebhookVerifier.of("whsec_not base64!"));
        assertThrows(IllegalArgumentException.class, () -> WebhookVerifier.of("whsec_"));
        assertThrows(IllegalArgumentException.class, () -> WebhookVerifier.of("whpk_AAAA"));
        assertThrows(IllegalArgumentException.class, () -> WebhookVerifier.of("whsk_" + Base64.getEncoder().encodeToString(new byte[32])));
        assertThrows(IllegalStateException.class, () -> WebhookVerifier.builder().build());
    }
}
