/**
 * Receiving webhooks: {@link org.isabroker.client.webhooks.WebhookVerifier} checks the Standard
 * Webhooks signatures ({@code v1} HMAC-SHA256, {@code v1a} ed25519) and the timestamp;
 * {@link org.isabroker.client.webhooks.WebhookReceiver} also opens encrypted bodies.
 */
package org.isabroker.client.webhooks;
