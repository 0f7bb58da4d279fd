package org.isabroker.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.crypto.ECDSAVerifier;
import com.nimbusds.jose.jwk.Curve;
import com.nimbusds.jose.jwk.ECKey;
import com.nimbusds.jose.jwk.gen.ECKeyGenerator;
import com.nimbusds.jwt.SignedJWT;
import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.Base64;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

class ClientCredentialsTest {

    private static Map<String, String> form(String body) {
        Map<String, String> out = new HashMap<>();
        for (String pair : body.split("&")) {
            String[] kv = pair.split("=", 2);
            out.put(URLDecoder.decode(kv[0], StandardCharsets.UTF_8), URLDecoder.decode(kv[1], StandardCharsets.UTF_8));
        }
        return out;
    }

    private static FakeServer tokenServer(AtomicInteger issued, int expiresIn) {
        return new FakeServer().on("POST /oauth/token", r -> FakeServer.Answer.json(200,
                "{\"access_token\":\"tok-" + issued.incrementAndGet() + "\",\"token_type\":\"Bearer\",\"expires_in\":"
                        + expiresIn + ",\"scope\":\"inbox:read\"}"));
    }

    @Test
    void clientSecretBasicIsCachedAndRefreshedBeforeExpiry() {
        AtomicInteger issued = new AtomicInteger();
        MutableClock clock = new MutableClock(Instant.parse("2026-01-15T09:30:00Z"));
        try (FakeServer server = tokenServer(issued, 300)) {
            URI endpoint = URI.create(server.uri() + "/oauth/token");
            ClientCredentials tokens = ClientCredentials.clientSecret(endpoint, "eastborough-vawg.abc", "cs_s3cret+/=")
                    .scopes("inbox:read", "inbox:ack").clock(clock).build();
            assertEquals("tok-1", tokens.accessToken());
            assertEquals("tok-1", tokens.accessToken(), "cached");
            assertEquals("inbox:read", tokens.grantedScope());
            clock.advance(Duration.ofSeconds(269));
            assertEquals("tok-1", tokens.accessToken(), "still more than 30 s left");
            clock.advance(Duration.ofSeconds(1));
            assertEquals("tok-2", tokens.accessToken(), "fetched again 30 s before expiry");
            tokens.invalidate("tok-2");
            assertEquals("tok-3", tokens.accessToken(), "fetched again after a 401");

            FakeServer.Request first = server.requests("POST /oauth/token").get(0);
            assertEquals("application/x-www-form-urlencoded", first.header("content-type"));
            String basic = new String(Base64.getDecoder().decode(first.header("authorization").substring(6)),
                    StandardCharsets.UTF_8);
            // RFC 6749 s2.3.1: each part form-urlencoded
            assertEquals("eastborough-vawg.abc:cs_s3cret%2B%2F%3D", basic);
            Map<String, String> form = form(first.text());
            assertEquals("client_credentials", form.get("grant_type"));
            assertEquals("inbox:read inbox:ack", form.get("scope"));
            assertNull(form.get("client_assertion"));
        }
    }

    @Test
    void aShortLivedTokenIsRefreshedAtHalfItsLife() {
        AtomicInteger issued = new AtomicInteger();
        MutableClock clock = new MutableClock(Instant.parse("2026-01-15T09:30:00Z"));
        try (FakeServer server = tokenServer(issued, 20)) {
            ClientCredentials tokens = ClientCredentials.clientSecret(URI.create(server.uri() + "/oauth/token"), "c", "s")
                    .clock(clock).build();
            assertEquals("tok-1", tokens.accessToken());
            clock.advance(Duration.ofSeconds(9));
            assertEquals("tok-1", tokens.accessToken());
            clock.advance(Duration.ofSeconds(1));
            assertEquals("tok-2", tokens.accessToken());
        }
    }

    @Test
    void privateKeyJwtSendsAFreshSignedAssertion() throws Exception {
        AtomicInteger issued = new AtomicInteger();
        ECKey key = new ECKeyGenerator(Curve.P_256).keyID("vawg-2026-01").generate();
        Instant now = Instant.parse("2026-01-15T09:30:00Z");
        MutableClock clock = new MutableClock(now);
        try (FakeServer server = tokenServer(issued, 300)) {
            URI endpoint = URI.create(server.uri() + "/oauth/token");
            ClientCredentials tokens = ClientCredentials.privateKeyJwt(endpoint, "eastborough-vawg.abc", key)
                    .clock(clock).build();
            tokens.accessToken();
            tokens.invalidate("tok-1");
            tokens.accessToken();
            String[] jtis = new String[2];
            for (int i = 0; i < 2; i++) {
                FakeServer.Request r = server.requests("POST /oauth/token").get(i);
                assertNull(r.header("authorization"), "no Authorization header with an assertion");
                Map<String, String> form = form(r.text());
                assertEquals("urn:ietf:params:oauth:client-assertion-type:jwt-bearer", form.get("client_assertion_type"));
                SignedJWT jwt = SignedJWT.parse(form.get("client_assertion"));
                assertEquals(JWSAlgorithm.ES256, jwt.getHeader().getAlgorithm());
                assertEquals("vawg-2026-01", jwt.getHeader().getKeyID());
                assertTrue(jwt.verify(new ECDSAVerifier(key.toPublicJWK())));
                assertEquals("eastborough-vawg.abc", jwt.getJWTClaimsSet().getIssuer());
                assertEquals("eastborough-vawg.abc", jwt.getJWTClaimsSet().getSubject());
                assertEquals(endpoint.toString(), jwt.getJWTClaimsSet().getAudience().get(0));
                assertEquals(now.getEpochSecond(), jwt.getJWTClaimsSet().getIssueTime().toInstant().getEpochSecond());
                assertEquals(now.plusSeconds(60).getEpochSecond(),
                        jwt.getJWTClaimsSet().getExpirationTime().toInstant().getEpochSecond());
                jtis[i] = jwt.getJWTClaimsSet().getJWTID();
            }
            assertNotEquals(jtis[0], jtis[1], "a jti is never reused");
        }
    }

    @Test
    void aPublicKeyCannotSign() throws Exception {
        ECKey key = new ECKeyGenerator(Curve.P_256).keyID("k").generate();
        assertThrows(IllegalArgumentException.class,
                () -> ClientCredentials.privateKeyJwt(URI.create("https://b.example/oauth/token"), "c", key.toPublicJWK()));
    }

    @Test
    void tokenEndpointErrorsAreTyped() {
        try (FakeServer server = new FakeServer()
                .on("POST /oauth/token", r -> new FakeServer.Answer(429, Map.of("Retry-After", "7", "Content-Type",
                        "application/json"), "{\"error\":\"temporarily_unavailable\",\"error_description\":\"slow down\"}"))) {
            ClientCredentials tokens = ClientCredentials.clientSecret(URI.create(server.uri() + "/oauth/token"), "c", "s").build();
            TokenException e = assertThrows(TokenException.class, tokens::accessToken);
            assertEquals(429, e.status());
            assertEquals("temporarily_unavailable", e.error());
            assertEquals("slow down", e.errorDescription());
            assertEquals(7, e.retryAfter().getAsInt());
        }
        try (FakeServer server = new FakeServer().on("POST /oauth/token",
                r -> FakeServer.Answer.json(401, "{\"error\":\"invalid_client\"}"))) {
            ClientCredentials tokens = ClientCredentials.clientSecret(URI.create(server.uri() + "/oauth/token"), "c", "s").build();
            assertEquals("invalid_client", assertThrows(TokenException.class, tokens::accessToken).error());
        }
    }

    @Test
    void noAnswerIsATransportException() {
        ClientCredentials tokens = ClientCredentials.clientSecret(URI.create("http://127.0.0.1:9/oauth/token"), "c", "s")
                .timeout(Duration.ofSeconds(2)).build();
        assertThrows(TransportException.class, tokens::accessToken);
    }
}
