package org.isabroker.client.webhooks;

import org.isabroker.client.CloudEvent;
import org.isabroker.client.crypto.OpenedDelivery;

/**
 * A webhook request verified (and, when encrypted, opened and checked).
 *
 * @param webhookId the delivery id: de-duplicate on it, and answer 2xx to a duplicate
 * @param event the CloudEvent
 * @param opened the sealed delivery's details (signing key, the JWS to keep), or null when the
 *     body was not encrypted
 * @param verified the signature check
 */
public record ReceivedWebhook(String webhookId, CloudEvent event, OpenedDelivery opened, VerifiedWebhook verified) {
    public boolean encrypted() {
        return opened != null;
    }
}
