package org.isabroker.client;

import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.JavaType;
import com.fasterxml.jackson.databind.JsonNode;
import com.nimbusds.jose.jwk.ECKey;
import com.nimbusds.jose.jwk.JWK;
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
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.UUID;
import org.isabroker.client.crypto.BrokerKeys;
import org.isabroker.client.crypto.RecipientKeys;

/**
 * The broker's HTTP API for one client of your agency.
 *
 * <pre>{@code
 * IsaBrokerClient broker = IsaBrokerClient.builder(URI.create("https://isa-broker.example"))
 *         .clientSecret(System.getenv("ISA_CLIENT_ID"), System.getenv("ISA_CLIENT_SECRET"))
 *         .build();
 * }</pre>
 *
 * Tokens are fetched, cached and refreshed for you; a call answered 401 is repeated once with a
 * new token. An error answer throws a {@link ProblemException} (a subclass for each kind of
 * refusal); no answer throws a {@link TransportException}. Nothing else is retried: repeat a
 * publish that failed with the same {@code Idempotency-Key}. Thread-safe.
 */
public final class IsaBrokerClient {
    private final URI base;
    private final TokenSource tokens;
    private final HttpClient http;
    private final Clock clock;
    private final Duration timeout;
    private final boolean allowHttp;

    private IsaBrokerClient(Builder b) {
        this.base = b.base;
        this.http = b.http;
        this.clock = b.clock;
        this.timeout = b.timeout;
        this.allowHttp = b.allowHttp;
        this.tokens = b.tokens;
    }

    /**
     * @param gatewayUrl the broker's public URL, e.g. {@code https://isa-broker.example}
     */
    public static Builder builder(URI gatewayUrl) {
        return new Builder(gatewayUrl);
    }

    public URI gatewayUrl() {
        return base;
    }

    public TokenSource tokens() {
        return tokens;
    }

    // -- publishing ---------------------------------------------------------------------------

    /**
     * Publishes a message: {@code POST /v1/messages/{messageType}}.
     *
     * @param messageType {@code release-notice}, {@code licence-recall} or {@code dip-breach}
     * @param body the event: a {@code Map}, a {@code JsonNode}, an object Jackson can write, or
     *     JSON text ({@code String} or {@code byte[]}) sent as it is
     * @throws SharingRefusedException no agreement permits the share
     * @throws ValidationException the body does not match the type's schema ({@code fields()})
     * @throws ConflictException {@code idempotency_key_reused}
     */
    public PublishResult publish(String messageType, Object body, PublishOptions options) {
        Objects.requireNonNull(messageType, "messageType");
        PublishOptions opts = options == null ? PublishOptions.defaults() : options;
        String key = opts.idempotencyKey() != null ? opts.idempotencyKey() : UUID.randomUUID().toString();
        Map<String, List<String>> query = new LinkedHashMap<>();
        query.put("purpose", opts.purposes());
        Response r = send("POST", "/v1/messages/" + segment(messageType), query, body,
                Map.of("Idempotency-Key", key), timeout);
        PublishResult result = r.as(PublishResult.class);
        boolean replayed = r.header("Idempotent-Replayed").map("true"::equalsIgnoreCase).orElse(false);
        return result.with(replayed, key);
    }

    /** Publishes a release notice. */
    public PublishResult publishReleaseNotice(Object body, PublishOptions options) {
        return publish("release-notice", body, options);
    }

    /** {@code GET /v1/messages/{id}}: the state and history of a message you sent or received. */
    public JsonNode message(String messageId) {
        return send("GET", "/v1/messages/" + segment(messageId), Map.of(), null, Map.of(), timeout).json();
    }

    // -- subscriptions ------------------------------------------------------------------------

    /** {@code POST /v1/subscriptions}. Store {@code secret()} and {@code kafkaCredential()} at once. */
    public Subscription createSubscription(SubscriptionRequest request) {
        return send("POST", "/v1/subscriptions", Map.of(), request.body(), Map.of(), timeout).as(Subscription.class);
    }

    /** Your subscriptions that are not deleted. */
    public List<Subscription> subscriptions() {
        return send("GET", "/v1/subscriptions", Map.of(), null, Map.of(), timeout)
                .as(new TypeReference<List<Subscription>>() {});
    }

    /** Deletes a subscription; what was waiting for it is dead-lettered. */
    public void deleteSubscription(String id) {
        send("DELETE", "/v1/subscriptions/" + segment(id), Map.of(), null, Map.of(), timeout);
    }

    /** Enables a disabled subscription (then replay its dead letters). */
    public Subscription enableSubscription(String id) {
        return send("POST", "/v1/subscriptions/" + segment(id) + "/enable", Map.of(), null, Map.of(), timeout)
                .as(Subscription.class);
    }

    /**
     * Gives a webhook subscription a new signing key; the previous one keeps signing too for
     * {@code overlap} (null: the broker's default, 24 hours unless configured).
     */
    public Subscription rotateSecret(String id, Duration overlap) {
        Map<String, Object> body = new LinkedHashMap<>();
        if (overlap != null) {
            body.put("overlap_seconds", overlap.getSeconds());
        }
        return send("POST", "/v1/subscriptions/" + segment(id) + "/rotate-secret", Map.of(), body, Map.of(), timeout)
                .as(Subscription.class);
    }

    /** Sets (or with null removes) a subscription's filters. */
    public Subscription updateFilters(String id, JsonNode filters) {
        Map<String, Object> body = new LinkedHashMap<>();
        body.put("filters", filters);
        return send("PATCH", "/v1/subscriptions/" + segment(id), Map.of(), body, Map.of(), timeout)
                .as(Subscription.class);
    }

    /** A new password for your party's Kafka user; the previous one stops working. */
    public KafkaCredential newKafkaCredential() {
        return send("POST", "/v1/kafka-credential", Map.of(), null, Map.of(), timeout).as(KafkaCredential.class);
    }

    // -- encryption keys ----------------------------------------------------------------------

    /**
     * Registers the public half of {@code key} ({@code POST /v1/encryption-keys}); it becomes
     * your party's current key at once. The private half is never sent.
     */
    public EncryptionKey registerEncryptionKey(JWK key) {
        if (!(key instanceof ECKey)) {
            throw new IllegalArgumentException("encryption keys are EC keys (P-256, P-384 or P-521)");
        }
        return send("POST", "/v1/encryption-keys", Map.of(),
                Map.of("jwk", RecipientKeys.publicJwk((ECKey) key)), Map.of(), timeout).as(EncryptionKey.class);
    }

    public List<EncryptionKey> encryptionKeys() {
        return send("GET", "/v1/encryption-keys", Map.of(), null, Map.of(), timeout)
                .as(new TypeReference<List<EncryptionKey>>() {});
    }

    /** Retires a key: nothing new is encrypted to it. Keep the private key until its records are consumed. */
    public EncryptionKey retireEncryptionKey(String kid) {
        return send("DELETE", "/v1/encryption-keys/" + segment(kid), Map.of(), null, Map.of(), timeout)
                .as(EncryptionKey.class);
    }

    /**
     * The broker's delivery-signing keys, fetched now from
     * {@code /.well-known/delivery-signing-keys.json} and refreshed from there on an unknown key
     * id. To pin them instead, save {@code jwks()} once, check the thumbprints with the broker's
     * operators, and load the file with {@link BrokerKeys#fromFile}.
     */
    public BrokerKeys brokerKeys() {
        return BrokerKeys.fromGateway(base).allowHttp(allowHttp).httpClient(http).clock(clock).build();
    }

    // -- deliveries and dead letters ----------------------------------------------------------

    /** Deliveries to your party, oldest first. */
    public List<Delivery> deliveries(DeliveryQuery query) {
        return send("GET", "/v1/deliveries", single(query), null, Map.of(), timeout)
                .as(new TypeReference<List<Delivery>>() {});
    }

    /** One delivery with its attempt history. */
    public Delivery delivery(String id) {
        return send("GET", "/v1/deliveries/" + segment(id), Map.of(), null, Map.of(), timeout).as(Delivery.class);
    }

    /** Your dead-lettered deliveries, with their history and the reason in {@code lastError}. */
    public List<Delivery> deadLetters(DeliveryQuery query) {
        return send("GET", "/v1/dead-letters", single(query), null, Map.of(), timeout)
                .as(new TypeReference<List<Delivery>>() {});
    }

    /** Queues one dead letter again (same delivery id: receivers still de-duplicate). */
    public List<String> replayDeadLetter(String id) {
        return replayed(send("POST", "/v1/dead-letters/" + segment(id) + "/replay", Map.of(), null, Map.of(), timeout));
    }

    /**
     * Queues again the dead letters of a subscription and/or a time range (at least one given;
     * {@code since} before {@code until}).
     */
    public List<String> replayDeadLetters(String subscriptionId, Instant since, Instant until) {
        Map<String, Object> body = new LinkedHashMap<>();
        if (subscriptionId != null) {
            body.put("subscription_id", subscriptionId);
        }
        if (since != null) {
            body.put("since", since.toString());
        }
        if (until != null) {
            body.put("until", until.toString());
        }
        return replayed(send("POST", "/v1/dead-letters/replay", Map.of(), body, Map.of(), timeout));
    }

    private static List<String> replayed(Response r) {
        List<String> ids = new ArrayList<>();
        r.json().path("replayed").forEach(n -> ids.add(n.asText()));
        return ids;
    }

    // -- duties -------------------------------------------------------------------------------

    /**
     * Your duties as recipient, earliest due first.
     *
     * @param status open, overdue, acknowledged, escalated, cleared, or null for all
     * @param messageId only this message's, or null
     */
    public Duty.Page duties(String status, String messageId) {
        Map<String, List<String>> q = new LinkedHashMap<>();
        if (status != null) {
            q.put("status", List.of(status));
        }
        if (messageId != null) {
            q.put("message_id", List.of(messageId));
        }
        return send("GET", "/v1/duties", q, null, Map.of(), timeout).as(Duty.Page.class);
    }

    public Duty duty(String id) {
        return send("GET", "/v1/duties/" + segment(id), Map.of(), null, Map.of(), timeout).as(Duty.class);
    }

    /**
     * Acknowledges a duty of yours, optionally with an action code its flow allows
     * ({@code allowedActions}). Repeating it answers the first acknowledgement.
     *
     * @throws ConflictException {@code duty_cleared}: nothing to acknowledge any more
     */
    public Duty acknowledgeDuty(String id, String action) {
        Map<String, Object> body = new LinkedHashMap<>();
        if (action != null) {
            body.put("action", action);
        }
        return send("POST", "/v1/duties/" + segment(id) + "/acknowledge", Map.of(), body, Map.of(), timeout)
                .as(Duty.class);
    }

    // -- inbox --------------------------------------------------------------------------------

    /**
     * One read of the inbox: {@code GET /v1/inbox}.
     *
     * @param after entries after this cursor; null: after this client's acknowledged cursor
     * @param limit 1 to 500
     * @param waitSeconds when there is no entry, wait up to this long for one (long poll; the
     *     broker cuts it to its maximum, 30 s by default)
     */
    public InboxPage readInbox(Long after, int limit, int waitSeconds) {
        Map<String, List<String>> q = new LinkedHashMap<>();
        if (after != null) {
            q.put("after", List.of(Long.toString(after)));
        }
        q.put("limit", List.of(Integer.toString(limit)));
        if (waitSeconds > 0) {
            q.put("wait", List.of(Integer.toString(waitSeconds)));
        }
        return send("GET", "/v1/inbox", q, null, Map.of(), timeout.plusSeconds(Math.max(0, waitSeconds)))
                .as(InboxPage.class);
    }

    /** Acknowledges every entry up to and including {@code cursor}; returns the cursor now acknowledged. */
    public long acknowledgeInbox(long cursor) {
        return send("POST", "/v1/inbox/ack", Map.of(), Map.of("cursor", cursor), Map.of(), timeout)
                .json().path("acknowledged").asLong();
    }

    /** The inbox as an {@code Iterable} / {@code Stream} that long-polls; see {@link Inbox}. */
    public Inbox.Builder inbox() {
        return new Inbox.Builder(this);
    }

    // -- anything else ------------------------------------------------------------------------

    /**
     * Any other call of the API (decisions, the audit log, message updates...), with the same
     * tokens and errors: {@code call("GET", "/v1/decisions/" + id, null)}.
     *
     * @return the JSON answer (a {@code NullNode} for 204)
     */
    public JsonNode call(String method, String pathAndQuery, Object body) {
        return send(method, pathAndQuery, Map.of(), body, Map.of(), timeout).json();
    }

    // -- plumbing -----------------------------------------------------------------------------

    private static Map<String, List<String>> single(DeliveryQuery query) {
        Map<String, List<String>> q = new LinkedHashMap<>();
        if (query != null) {
            query.params().forEach((k, v) -> q.put(k, List.of(v)));
        }
        return q;
    }

    private static String segment(String s) {
        return URLEncoder.encode(Objects.requireNonNull(s, "id"), StandardCharsets.UTF_8).replace("+", "%20");
    }

    private static String query(Map<String, List<String>> query) {
        StringBuilder sb = new StringBuilder();
        query.forEach((k, vs) -> {
            for (String v : vs) {
                sb.append(sb.length() == 0 ? '?' : '&')
                        .append(URLEncoder.encode(k, StandardCharsets.UTF_8)).append('=')
                        .append(URLEncoder.encode(v, StandardCharsets.UTF_8));
            }
        });
        return sb.toString();
    }

    static final class Response {
        final int status;
        final HttpResponse<byte[]> raw;

        Response(HttpResponse<byte[]> raw) {
            this.status = raw.statusCode();
            this.raw = raw;
        }

        JsonNode json() {
            byte[] b = raw.body();
            return b == null || b.length == 0 ? Json.MAPPER.nullNode() : Json.parse(b);
        }

        <T> T as(Class<T> type) {
            return read(Json.MAPPER.constructType(type));
        }

        <T> T as(TypeReference<T> type) {
            return read(Json.MAPPER.getTypeFactory().constructType(type));
        }

        private <T> T read(JavaType type) {
            try {
                return Json.MAPPER.readValue(raw.body(), type);
            } catch (IOException e) {
                throw new IsaBrokerException("unexpected answer from " + raw.uri() + ": " + e.getMessage(), e);
            }
        }

        java.util.Optional<String> header(String name) {
            return raw.headers().firstValue(name);
        }
    }

    private Response send(String method, String path, Map<String, List<String>> query, Object body,
            Map<String, String> headers, Duration requestTimeout) {
        URI uri = URI.create(base.toString().replaceAll("/+$", "") + path + query(query));
        byte[] payload = body == null ? null : body instanceof byte[] ? (byte[]) body
                : body instanceof String ? ((String) body).getBytes(StandardCharsets.UTF_8) : Json.bytes(body);
        for (int attempt = 0; ; attempt++) {
            String token = tokens.accessToken();
            HttpRequest.Builder request = HttpRequest.newBuilder(uri)
                    .timeout(requestTimeout)
                    .header("Authorization", "Bearer " + token)
                    .header("Accept", "application/json, application/problem+json")
                    .header("User-Agent", "isa-broker-client-java/0.1");
            headers.forEach(request::header);
            if (payload != null) {
                request.header("Content-Type", "application/json")
                        .method(method, HttpRequest.BodyPublishers.ofByteArray(payload));
            } else {
                request.method(method, HttpRequest.BodyPublishers.noBody());
            }
            HttpResponse<byte[]> response;
            try {
                response = http.send(request.build(), HttpResponse.BodyHandlers.ofByteArray());
            } catch (IOException e) {
                throw new TransportException(method + " " + path + ": no answer from the broker: " + e, e);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new TransportException(method + " " + path + ": interrupted", e);
            }
            int status = response.statusCode();
            if (status == 401 && attempt == 0) {
                tokens.invalidate(token); // expired or revoked: one more try with a new token
                continue;
            }
            if (status >= 200 && status < 300) {
                return new Response(response);
            }
            throw ProblemException.from(status, name -> response.headers().firstValue(name).orElse(null),
                    response.body(), clock);
        }
    }

    /** Where the broker is and how to authenticate. */
    public static final class Builder {
        private final URI base;
        private TokenSource tokens;
        private String clientId;
        private String clientSecret;
        private JWK privateKey;
        private String[] scopes = new String[0];
        private HttpClient http;
        private Clock clock = Clock.systemUTC();
        private Duration timeout = Duration.ofSeconds(30);
        private boolean allowHttp;

        private Builder(URI base) {
            this.base = Objects.requireNonNull(base, "gatewayUrl");
        }

        /** Authenticate with a client secret ({@code client_secret_basic}). */
        public Builder clientSecret(String clientId, String clientSecret) {
            this.clientId = Objects.requireNonNull(clientId, "clientId");
            this.clientSecret = Objects.requireNonNull(clientSecret, "clientSecret");
            return this;
        }

        /** Authenticate with a private key ({@code private_key_jwt}); see {@link ClientCredentials}. */
        public Builder privateKeyJwt(String clientId, JWK privateKey) {
            this.clientId = Objects.requireNonNull(clientId, "clientId");
            this.privateKey = Objects.requireNonNull(privateKey, "privateKey");
            return this;
        }

        /** Tokens from elsewhere (your own identity provider, or a shared {@link ClientCredentials}). */
        public Builder tokenSource(TokenSource tokens) {
            this.tokens = Objects.requireNonNull(tokens);
            return this;
        }

        /** Ask for these scopes only; default all of the client's. */
        public Builder scopes(String... scopes) {
            this.scopes = scopes.clone();
            return this;
        }

        /** The HTTP client (TLS settings, proxy, executor). It must not follow redirects. */
        public Builder httpClient(HttpClient http) {
            this.http = http;
            return this;
        }

        public Builder clock(Clock clock) {
            this.clock = Objects.requireNonNull(clock);
            return this;
        }

        /** Timeout of one call (a long poll adds its wait). */
        public Builder timeout(Duration timeout) {
            this.timeout = Objects.requireNonNull(timeout);
            return this;
        }

        /** Accept a plain-http gateway URL: local development ({@code isa-broker dev}) only. */
        public Builder allowHttp(boolean allow) {
            this.allowHttp = allow;
            return this;
        }

        public IsaBrokerClient build() {
            String scheme = base.getScheme();
            if (!"https".equalsIgnoreCase(scheme) && !("http".equalsIgnoreCase(scheme) && allowHttp)) {
                throw new IllegalArgumentException("the gateway URL must be https (http only with allowHttp): " + base);
            }
            if (http == null) {
                http = HttpClients.defaultClient();
            }
            if (tokens == null) {
                URI endpoint = URI.create(base.toString().replaceAll("/+$", "") + "/oauth/token");
                ClientCredentials.Builder b;
                if (privateKey != null) {
                    b = ClientCredentials.privateKeyJwt(endpoint, clientId, privateKey);
                } else if (clientSecret != null) {
                    b = ClientCredentials.clientSecret(endpoint, clientId, clientSecret);
                } else {
                    throw new IllegalStateException("give clientSecret, privateKeyJwt or tokenSource");
                }
                tokens = b.scopes(scopes).httpClient(http).clock(clock).build();
            }
            return new IsaBrokerClient(this);
        }
    }
}
