package org.isabroker.client;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * A new subscription: {@link #webhook}, {@link #inbox} or {@link #kafka}.
 *
 * <pre>{@code
 * SubscriptionRequest.webhook("https://vawg.example/isa-webhook", "release-notice")
 *         .signatureScheme("v1a")    // ed25519: the broker keeps the secret key
 *         .encrypted()               // bodies as JWE to your registered key
 * }</pre>
 *
 * What you receive is decided by the agreements, not the subscription. Subscribe before
 * messages flow: a message routed while you had no subscription for its type is not sent later.
 */
public final class SubscriptionRequest {
    private final String channel;
    private final List<String> messageTypes;
    private final String url;
    private String signatureScheme;
    private boolean encrypt;
    private JsonNode filters;

    private SubscriptionRequest(String channel, List<String> messageTypes, String url) {
        if (messageTypes.isEmpty()) {
            throw new IllegalArgumentException("name at least one message type");
        }
        this.channel = channel;
        this.messageTypes = messageTypes;
        this.url = url;
    }

    /** Signed POSTs to {@code url} (https; plain http only where the operator allows it). */
    public static SubscriptionRequest webhook(String url, String... messageTypes) {
        return new SubscriptionRequest("webhook", List.of(messageTypes), Objects.requireNonNull(url, "url"));
    }

    /** Entries in your inbox, pulled with {@code GET /v1/inbox}. */
    public static SubscriptionRequest inbox(String... messageTypes) {
        return new SubscriptionRequest("inbox", List.of(messageTypes), null);
    }

    /** Records on your party's own Kafka topic, always encrypted (register a key first). */
    public static SubscriptionRequest kafka(String... messageTypes) {
        return new SubscriptionRequest("kafka", List.of(messageTypes), null);
    }

    /** Webhooks only: {@code v1} (HMAC-SHA256, the default) or {@code v1a} (ed25519). */
    public SubscriptionRequest signatureScheme(String scheme) {
        if (!"webhook".equals(channel)) {
            throw new IllegalStateException("signature schemes are for webhooks");
        }
        this.signatureScheme = scheme;
        return this;
    }

    /** Webhooks only: each body a compact JWE to your current encryption key. */
    public SubscriptionRequest encrypted() {
        if (!"webhook".equals(channel)) {
            throw new IllegalStateException("encrypt is set on webhook subscriptions (kafka always is)");
        }
        this.encrypt = true;
        return this;
    }

    /** Narrowing filters (see the broker's documentation of subscription filters). */
    public SubscriptionRequest filters(JsonNode filters) {
        this.filters = filters;
        return this;
    }

    Map<String, Object> body() {
        Map<String, Object> body = new LinkedHashMap<>();
        body.put("message_types", messageTypes);
        body.put("channel", channel);
        if (url != null) {
            body.put("webhook", Map.of("url", url));
        }
        if (signatureScheme != null) {
            body.put("signature_scheme", signatureScheme);
        }
        if (encrypt) {
            body.put("encrypt", true);
        }
        if (filters != null) {
            body.put("filters", filters);
        }
        return body;
    }
}
