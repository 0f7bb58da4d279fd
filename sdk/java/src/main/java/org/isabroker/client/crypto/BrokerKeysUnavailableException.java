package org.isabroker.client.crypto;

/** Signed with a key id not among the broker's keys held, and fetching them again failed: the delivery may be genuine; try it again later. */
public class BrokerKeysUnavailableException extends DeliveryOpenException {
    private static final long serialVersionUID = 1L;

    public BrokerKeysUnavailableException(String message) {
        super(Kind.BROKER_KEYS_UNAVAILABLE, message, null);
    }

    public BrokerKeysUnavailableException(String message, Throwable cause) {
        super(Kind.BROKER_KEYS_UNAVAILABLE, message, cause);
    }
}
