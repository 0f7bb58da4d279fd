package org.isabroker.client.webhooks;

import java.util.Objects;
import java.util.function.Function;
import org.isabroker.client.CloudEvent;
import org.isabroker.client.crypto.DeliveryOpenException;
import org.isabroker.client.crypto.DeliveryOpener;
import org.isabroker.client.crypto.MisroutedException;
import org.isabroker.client.crypto.OpenedDelivery;

/**
 * One call for a webhook request: verify the signature over the raw body, then, for an
 * encrypted subscription ({@code content-type: application/jose}), open the body with a
 * {@link DeliveryOpener} bound to the {@code webhook-id}; otherwise parse the CloudEvent.
 *
 * <pre>{@code
 * WebhookReceiver receiver = new WebhookReceiver(verifier, opener, true);
 * try {
 *     ReceivedWebhook hook = receiver.receive(exchange.getRequestHeaders()::getFirst, body);
 *     if (seen.add(hook.webhookId())) store(hook.event());
 *     answer 204
 * } catch (WebhookVerificationException | DeliveryOpenException e) {
 *     answer 401 (or 400); never act on the body
 * }
 * }</pre>
 */
public final class WebhookReceiver {
    private final WebhookVerifier verifier;
    private final DeliveryOpener opener;
    private final boolean requireEncryption;

    /**
     * @param opener opens encrypted bodies; null if no subscription of yours is encrypted
     * @param requireEncryption refuse a body that is not encrypted (set it when every
     *     subscription to this endpoint was made with {@code "encrypt": true})
     */
    public WebhookReceiver(WebhookVerifier verifier, DeliveryOpener opener, boolean requireEncryption) {
        this.verifier = Objects.requireNonNull(verifier, "verifier");
        this.opener = opener;
        if (requireEncryption && opener == null) {
            throw new IllegalArgumentException("requireEncryption needs an opener");
        }
        this.requireEncryption = requireEncryption;
    }

    /**
     * Verifies and reads a request.
     *
     * @param header a request header by lower-case name, null when absent
     * @throws WebhookVerificationException the signature or timestamp does not verify (answer 401)
     * @throws DeliveryOpenException the body is encrypted but cannot be used (see its kind)
     */
    public ReceivedWebhook receive(Function<String, String> header, byte[] body) {
        VerifiedWebhook verified = verifier.verify(header, body);
        boolean sealed = DeliveryOpener.isSealed(header.apply("content-type"));
        if (sealed) {
            if (opener == null) {
                throw new DeliveryOpenException("an encrypted body, and no keys to open it with");
            }
            OpenedDelivery opened = opener.openWebhook(body, verified.id());
            return new ReceivedWebhook(verified.id(), opened.event(), opened, verified);
        }
        if (requireEncryption) {
            throw new DeliveryOpenException("a body in clear where encryption is required");
        }
        CloudEvent event = DeliveryOpener.plainEvent(body);
        String inside = event.deliveryId();
        if (inside != null && !inside.equals(verified.id())) {
            throw new MisroutedException("the CloudEvent names delivery " + inside + ", the request " + verified.id());
        }
        return new ReceivedWebhook(verified.id(), event, null, verified);
    }
}
