package org.isabroker.client;

import com.fasterxml.jackson.databind.JsonNode;
import com.nimbusds.jose.JOSEException;
import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.JWSHeader;
import com.nimbusds.jose.JWSSigner;
import com.nimbusds.jose.crypto.ECDSASigner;
import com.nimbusds.jose.crypto.RSASSASigner;
import com.nimbusds.jose.jwk.Curve;
import com.nimbusds.jose.jwk.ECKey;
import com.nimbusds.jose.jwk.JWK;
import com.nimbusds.jose.jwk.RSAKey;
import com.nimbusds.jwt.JWTClaimsSet;
import com.nimbusds.jwt.SignedJWT;
import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.Base64;
import java.util.Date;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.UUID;
import java.util.stream.Collectors;

/**
 * OAuth 2.0 client credentials (RFC 6749 s4.4) at the broker's {@code POST /oauth/token}, with
 * a client secret ({@code client_secret_basic}) or a private key ({@code private_key_jwt},
 * RFC 7523: preferred, since no secret is shared).
 *
 * <p>The token is cached and fetched again shortly before it expires (by default 30 seconds
 * before, or half its lifetime if that is shorter), and at once after the broker answers 401.
 * There is no refresh token. Thread-safe: concurrent callers share one fetch.
 *
 * <pre>{@code
 * TokenSource tokens = ClientCredentials.clientSecret(tokenEndpoint, clientId, secret).build();
 * TokenSource tokens = ClientCredentials.privateKeyJwt(tokenEndpoint, clientId, privateJwk).build();
 * }</pre>
 */
public final class ClientCredentials implements TokenSource {
    private static final String ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

    private final URI tokenEndpoint;
    private final String clientId;
    private final String clientSecret;
    private final JWK privateKey;
    private final String audience;
    private final List<String> scopes;
    private final HttpClient http;
    private final Clock clock;
    private final Duration refreshMargin;
    private final Duration assertionLifetime;
    private final Duration timeout;

    private String token;
    private Instant refreshAt = Instant.MIN;
    private String grantedScope;

    private ClientCredentials(Builder b) {
        this.tokenEndpoint = b.tokenEndpoint;
        this.clientId = b.clientId;
        this.clientSecret = b.clientSecret;
        this.privateKey = b.privateKey;
        this.audience = b.audience == null ? b.tokenEndpoint.toString() : b.audience;
        this.scopes = List.copyOf(b.scopes);
        this.http = b.http == null ? HttpClients.defaultClient() : b.http;
        this.clock = b.clock;
        this.refreshMargin = b.refreshMargin;
        this.assertionLifetime = b.assertionLifetime;
        this.timeout = b.timeout;
    }

    /** A client registered with a secret ({@code client_secret_basic}). */
    public static Builder clientSecret(URI tokenEndpoint, String clientId, String clientSecret) {
        Builder b = new Builder(tokenEndpoint, clientId);
        b.clientSecret = Objects.requireNonNull(clientSecret, "clientSecret");
        return b;
    }

    /**
     * A client registered with a public JWK set ({@code private_key_jwt}): {@code privateKey} is
     * its private half, with its {@code kid}. EC keys sign with ES256 (P-256) or ES384 (P-384);
     * RSA keys with the key's {@code alg} (PS256 or RS256), PS256 by default.
     */
    public static Builder privateKeyJwt(URI tokenEndpoint, String clientId, JWK privateKey) {
        Builder b = new Builder(tokenEndpoint, clientId);
        if (!Objects.requireNonNull(privateKey, "privateKey").isPrivate()) {
            throw new IllegalArgumentException("privateKeyJwt needs the private key (with d)");
        }
        b.privateKey = privateKey;
        return b;
    }

    public String clientId() {
        return clientId;
    }

    /** The scopes of the current token, as the broker granted them (null before the first). */
    public synchronized String grantedScope() {
        return grantedScope;
    }

    @Override
    public synchronized String accessToken() {
        Instant now = clock.instant();
        if (token == null || !now.isBefore(refreshAt)) {
            fetch(now);
        }
        return token;
    }

    @Override
    public synchronized void invalidate(String rejected) {
        if (rejected != null && rejected.equals(token)) {
            token = null;
        }
    }

    private void fetch(Instant now) {
        Map<String, String> form = new LinkedHashMap<>();
        form.put("grant_type", "client_credentials");
        if (!scopes.isEmpty()) {
            form.put("scope", String.join(" ", scopes));
        }
        HttpRequest.Builder request = HttpRequest.newBuilder(tokenEndpoint)
                .timeout(timeout)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("Accept", "application/json");
        if (privateKey != null) {
            form.put("client_assertion_type", ASSERTION_TYPE);
            form.put("client_assertion", assertion(now));
        } else {
            // RFC 6749 s2.3.1: each part form-urlencoded before the Basic encoding
            String pair = form(clientId) + ":" + form(clientSecret);
            request.header("Authorization", "Basic "
                    + Base64.getEncoder().encodeToString(pair.getBytes(StandardCharsets.UTF_8)));
        }
        String body = form.entrySet().stream()
                .map(e -> form(e.getKey()) + "=" + form(e.getValue()))
                .collect(Collectors.joining("&"));
        HttpResponse<byte[]> response;
        try {
            response = http.send(request.POST(HttpRequest.BodyPublishers.ofString(body)).build(),
                    HttpResponse.BodyHandlers.ofByteArray());
        } catch (IOException e) {
            throw new TransportException("token endpoint " + tokenEndpoint + " unreachable: " + e, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new TransportException("interrupted while fetching a token", e);
        }
        JsonNode json;
        try {
            json = Json.parse(response.body());
        } catch (RuntimeException e) {
            json = Json.MAPPER.createObjectNode();
        }
        if (response.statusCode() != 200 || Json.text(json, "access_token") == null) {
            String error = Json.text(json, "error");
            Integer retryAfter = ProblemException.retryAfterOf(
                    response.headers().firstValue("Retry-After").orElse(null), json, clock);
            throw new TokenException(response.statusCode(), error == null ? "invalid_response" : error,
                    Json.text(json, "error_description"), retryAfter);
        }
        long lifetime = json.path("expires_in").asLong(300);
        Duration margin = refreshMargin.compareTo(Duration.ofSeconds(lifetime / 2)) > 0
                ? Duration.ofSeconds(lifetime / 2) : refreshMargin;
        token = Json.text(json, "access_token");
        grantedScope = Json.text(json, "scope");
        refreshAt = now.plusSeconds(lifetime).minus(margin);
    }

    /** A fresh client assertion: never reused, since the broker refuses a replayed {@code jti}. */
    private String assertion(Instant now) {
        JWTClaimsSet claims = new JWTClaimsSet.Builder()
                .issuer(clientId)
                .subject(clientId)
                .audience(audience)
                .issueTime(Date.from(now))
                .expirationTime(Date.from(now.plus(assertionLifetime)))
                .jwtID(UUID.randomUUID().toString())
                .build();
        try {
            JWSAlgorithm alg;
            JWSSigner signer;
            if (privateKey instanceof ECKey) {
                ECKey ec = (ECKey) privateKey;
                alg = Curve.P_384.equals(ec.getCurve()) ? JWSAlgorithm.ES384
                        : Curve.P_521.equals(ec.getCurve()) ? JWSAlgorithm.ES512 : JWSAlgorithm.ES256;
                signer = new ECDSASigner(ec);
            } else if (privateKey instanceof RSAKey) {
                alg = privateKey.getAlgorithm() == null ? JWSAlgorithm.PS256
                        : JWSAlgorithm.parse(privateKey.getAlgorithm().getName());
                signer = new RSASSASigner((RSAKey) privateKey);
            } else {
                throw new IllegalArgumentException("private_key_jwt supports EC and RSA keys, not "
                        + privateKey.getKeyType());
            }
            SignedJWT jwt = new SignedJWT(new JWSHeader.Builder(alg).keyID(privateKey.getKeyID()).build(), claims);
            jwt.sign(signer);
            return jwt.serialize();
        } catch (JOSEException e) {
            throw new IsaBrokerException("could not sign the client assertion: " + e.getMessage(), e);
        }
    }

    private static String form(String s) {
        return URLEncoder.encode(s, StandardCharsets.UTF_8);
    }

    /** Options; {@link #build()} makes the token source. */
    public static final class Builder {
        private final URI tokenEndpoint;
        private final String clientId;
        private String clientSecret;
        private JWK privateKey;
        private String audience;
        private List<String> scopes = List.of();
        private HttpClient http;
        private Clock clock = Clock.systemUTC();
        private Duration refreshMargin = Duration.ofSeconds(30);
        private Duration assertionLifetime = Duration.ofSeconds(60);
        private Duration timeout = Duration.ofSeconds(30);

        private Builder(URI tokenEndpoint, String clientId) {
            this.tokenEndpoint = Objects.requireNonNull(tokenEndpoint, "tokenEndpoint");
            this.clientId = Objects.requireNonNull(clientId, "clientId");
        }

        /** Ask for these scopes only (a subset of the client's); default: all of them. */
        public Builder scopes(String... scopes) {
            this.scopes = List.of(scopes);
            return this;
        }

        /** The assertion's {@code aud}; default the token endpoint URL (the issuer URL is also accepted). */
        public Builder audience(String audience) {
            this.audience = audience;
            return this;
        }

        public Builder httpClient(HttpClient http) {
            this.http = http;
            return this;
        }

        public Builder clock(Clock clock) {
            this.clock = Objects.requireNonNull(clock);
            return this;
        }

        /** How long before expiry a token is fetched again (at most half its lifetime). */
        public Builder refreshMargin(Duration margin) {
            this.refreshMargin = Objects.requireNonNull(margin);
            return this;
        }

        /** The client assertion's lifetime; the broker accepts at most 300 seconds by default. */
        public Builder assertionLifetime(Duration lifetime) {
            this.assertionLifetime = Objects.requireNonNull(lifetime);
            return this;
        }

        public Builder timeout(Duration timeout) {
            this.timeout = Objects.requireNonNull(timeout);
            return this;
        }

        public ClientCredentials build() {
            return new ClientCredentials(this);
        }
    }
}
