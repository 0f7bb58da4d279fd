package org.isabroker.client;

/**
 * No answer from the broker: the connection failed, timed out or was interrupted, or the answer
 * could not be read. Repeat a publish that failed so with the same {@code Idempotency-Key}.
 */
public class TransportException extends IsaBrokerException {
    private static final long serialVersionUID = 1L;

    public TransportException(String message, Throwable cause) {
        super(message, cause);
    }
}
