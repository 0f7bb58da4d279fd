package org.isabroker.client;

/**
 * The root of every exception this SDK throws. All are unchecked: catch the subclasses you can
 * act on ({@link ProblemException} and its kinds, {@link TokenException},
 * {@link TransportException}, {@link org.isabroker.client.webhooks.WebhookVerificationException},
 * {@link org.isabroker.client.crypto.DeliveryOpenException}).
 */
public class IsaBrokerException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public IsaBrokerException(String message) {
        super(message);
    }

    public IsaBrokerException(String message, Throwable cause) {
        super(message, cause);
    }
}
