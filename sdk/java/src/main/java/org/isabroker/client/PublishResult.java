package org.isabroker.client;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.List;

/**
 * The broker's {@code 202 Accepted} to a publish: the message is stored with its decision.
 *
 * @param id the message id, also the CloudEvent {@code id} every recipient sees
 * @param recipients who will be sent what, and under which agreements
 * @param notApplied candidate flows that shared nothing, with why
 * @param replayed true when the broker answered {@code Idempotent-Replayed: true}: this
 *     Idempotency-Key was used before for the same request, and nothing new was stored
 * @param idempotencyKey the {@code Idempotency-Key} the request was sent with
 */
public record PublishResult(
        String id,
        String status,
        String messageType,
        String lifecycle,
        String refersTo,
        Integer version,
        List<Recipient> recipients,
        JsonNode agreements,
        JsonNode notApplied,
        JsonNode warnings,
        JsonNode timeliness,
        boolean replayed,
        String idempotencyKey) {

    /** One recipient of the message, as decided when it was published. */
    public record Recipient(
            String party,
            List<String> fields,
            JsonNode agreements,
            List<String> purposes,
            JsonNode grants,
            JsonNode withheld) {}

    PublishResult with(boolean replayed, String idempotencyKey) {
        return new PublishResult(id, status, messageType, lifecycle, refersTo, version, recipients,
                agreements, notApplied, warnings, timeliness, replayed, idempotencyKey);
    }

    /** The parties that will be sent the message. */
    public java.util.List<String> parties() {
        return recipients == null ? java.util.List.of()
                : recipients.stream().map(Recipient::party).collect(java.util.stream.Collectors.toList());
    }
}
