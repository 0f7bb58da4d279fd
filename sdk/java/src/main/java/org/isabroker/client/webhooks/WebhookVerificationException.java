package org.isabroker.client.webhooks;

import org.isabroker.client.IsaBrokerException;

/**
 * A webhook request that must not be accepted: answer {@code 401} and do not process it.
 * {@link #kind()} is {@link Kind#TIMESTAMP} when {@code webhook-timestamp} is missing, not a
 * number, or further from your clock than the tolerance (a replayed capture, or a clock out of
 * sync: keep the host's clock synchronised), and {@link Kind#SIGNATURE} when a header is
 * missing or no signature verifies with any key you hold.
 */
public class WebhookVerificationException extends IsaBrokerException {
    private static final long serialVersionUID = 1L;

    /** Which check failed. */
    public enum Kind {
        TIMESTAMP, SIGNATURE
    }

    private final Kind kind;

    public WebhookVerificationException(Kind kind, String message) {
        super(message);
        this.kind = kind;
    }

    public Kind kind() {
        return kind;
    }
}
