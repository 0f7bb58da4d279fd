package org.isabroker.client;

import java.time.Instant;
import java.util.List;

/**
 * A delivery of a message to your party on one subscription.
 *
 * @param id the delivery id: {@code webhook-id}, the inbox entry's {@code delivery_id}, the
 *     Kafka header {@code isa_delivery_id}
 * @param status pending, retrying, delivered, dead_lettered, withheld or no_channel
 * @param history every attempt, oldest first (only in {@code getDelivery} and dead letters)
 */
public record Delivery(
        String id,
        String messageId,
        String messageType,
        String subscriptionId,
        String channel,
        String status,
        List<String> fields,
        int attempts,
        Integer lastStatusCode,
        String lastError,
        Instant nextAttemptAt,
        Instant createdAt,
        Instant updatedAt,
        List<Attempt> history) {

    /** One attempt: {@code statusCode} null when no HTTP answer came, or not a webhook. */
    public record Attempt(Instant at, Integer statusCode, String error, Double durationMs) {}
}
