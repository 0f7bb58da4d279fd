package org.isabroker.client.crypto;

/** Encrypted to a key id that is not among your private keys: another agency's key, or one of yours not loaded (keep every private key until the records sealed to it are consumed). */
public class UnknownKeyException extends DeliveryOpenException {
    private static final long serialVersionUID = 1L;

    public UnknownKeyException(String message) {
        super(Kind.UNKNOWN_KEY, message, null);
    }

    public UnknownKeyException(String message, Throwable cause) {
        super(Kind.UNKNOWN_KEY, message, cause);
    }
}
