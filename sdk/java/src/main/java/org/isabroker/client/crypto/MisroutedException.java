package org.isabroker.client.crypto;

/** Encrypted to another party, or bound to another message or delivery than the record it arrived in; or the event inside names another message, recipient or delivery. A misrouted or copied record: do not use it. */
public class MisroutedException extends DeliveryOpenException {
    private static final long serialVersionUID = 1L;

    public MisroutedException(String message) {
        super(Kind.MISROUTED, message, null);
    }

    public MisroutedException(String message, Throwable cause) {
        super(Kind.MISROUTED, message, cause);
    }
}
