package org.isabroker.client.crypto;

import org.isabroker.client.IsaBrokerException;

/**
 * A sealed delivery (an agency-topic record, or an encrypted webhook body) that must not be
 * used. {@link #kind()} says why; each kind but {@link Kind#MALFORMED} also has its subclass,
 * to catch:
 *
 * <ul>
 *   <li>{@link MisroutedException}: encrypted to another party, or bound to another message or
 *       delivery than the record's headers or the {@code webhook-id}; do not use it;
 *   <li>{@link UnknownKeyException}: encrypted to a key id you do not hold; load every private
 *       key you still hold (rotation);
 *   <li>{@link NotSignedByBrokerException}: decrypts, but the broker did not sign it for this
 *       delivery: a forgery, never act on it; tell the broker's operators;
 *   <li>{@link BrokerKeysUnavailableException}: signed by a broker key id not held yet, and
 *       fetching the broker's keys again failed; try again later;
 *   <li>this class with {@link Kind#MALFORMED}: not well formed, or does not decrypt with the
 *       key of its {@code kid}.
 * </ul>
 *
 * Messages name ids and reasons, never the content.
 */
public class DeliveryOpenException extends IsaBrokerException {
    private static final long serialVersionUID = 1L;

    /** Why a sealed delivery was refused. */
    public enum Kind {
        MALFORMED, UNKNOWN_KEY, MISROUTED, NOT_SIGNED_BY_BROKER, BROKER_KEYS_UNAVAILABLE
    }

    private final Kind kind;

    public DeliveryOpenException(String message) {
        this(Kind.MALFORMED, message, null);
    }

    public DeliveryOpenException(String message, Throwable cause) {
        this(Kind.MALFORMED, message, cause);
    }

    protected DeliveryOpenException(Kind kind, String message, Throwable cause) {
        super(message, cause);
        this.kind = kind;
    }

    public Kind kind() {
        return kind;
    }
}
