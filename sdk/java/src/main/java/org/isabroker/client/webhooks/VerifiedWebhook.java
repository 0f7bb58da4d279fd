package org.isabroker.client.webhooks;

import java.time.Instant;

/**
 * A webhook request whose signature and timestamp verified.
 *
 * @param id {@code webhook-id}: the delivery id, the same on every retry and replay — de-duplicate on it
 * @param timestamp {@code webhook-timestamp}
 * @param body the raw body, exactly as received
 * @param scheme the scheme of the signature that verified: {@code v1} or {@code v1a}
 * @param keyIndex which of the verifier's keys verified it (0 = the first given)
 */
public record VerifiedWebhook(String id, Instant timestamp, byte[] body, String scheme, int keyIndex) {
    @Override
    public byte[] body() {
        return body.clone();
    }
}
