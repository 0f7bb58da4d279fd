package org.isabroker.client;

import com.fasterxml.jackson.databind.JsonNode;
import java.time.Instant;
import java.util.List;

/**
 * A subscription. {@link #secret()} (a {@code v1} webhook's {@code whsec_} secret) and
 * {@link #kafkaCredential()} (the first {@code kafka} subscription's) are shown only in the
 * answer that creates or rotates them: store them as secrets at once.
 */
public record Subscription(
        String id,
        List<String> messageTypes,
        String channel,
        Webhook webhook,
        String kafkaTopic,
        String status,
        String statusReason,
        Instant createdAt,
        String signatureScheme,
        String publicKey,
        Instant previousSecretUntil,
        JsonNode filters,
        boolean encrypt,
        String secret,
        KafkaCredential kafkaCredential) {

    public record Webhook(String url) {}
}
