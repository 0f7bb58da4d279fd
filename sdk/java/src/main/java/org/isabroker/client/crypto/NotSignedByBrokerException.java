package org.isabroker.client.crypto;

/** Decrypts, but the broker did not sign it for this delivery: an unsigned event, another algorithm or type, a key the broker does not publish, a signature that does not verify, or a signed binding that differs from the encryption header (a record encrypted again by someone else). Treat it as forged. */
public class NotSignedByBrokerException extends DeliveryOpenException {
    private static final long serialVersionUID = 1L;

    public NotSignedByBrokerException(String message) {
        super(Kind.NOT_SIGNED_BY_BROKER, message, null);
    }

    public NotSignedByBrokerException(String message, Throwable cause) {
        super(Kind.NOT_SIGNED_BY_BROKER, message, cause);
    }
}
