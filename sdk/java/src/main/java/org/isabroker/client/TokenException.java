package org.isabroker.client;

import java.util.OptionalInt;

/**
 * The token endpoint refused to issue a token. {@link #error()} is the OAuth 2.0 error code
 * (RFC 6749 s5.2): {@code invalid_client} for any authentication failure (unknown or disabled
 * client, wrong secret, bad or replayed assertion), {@code invalid_scope},
 * {@code invalid_request}, {@code unsupported_grant_type}, or {@code temporarily_unavailable}
 * (429: wait {@link #retryAfter()} seconds).
 */
public class TokenException extends IsaBrokerException {
    private static final long serialVersionUID = 1L;

    private final int status;
    private final String error;
    private final String errorDescription;
    private final Integer retryAfter;

    public TokenException(int status, String error, String errorDescription, Integer retryAfter) {
        super("token endpoint answered " + status + " " + error
                + (errorDescription == null ? "" : ": " + errorDescription));
        this.status = status;
        this.error = error;
        this.errorDescription = errorDescription;
        this.retryAfter = retryAfter;
    }

    public int status() {
        return status;
    }

    public String error() {
        return error;
    }

    public String errorDescription() {
        return errorDescription;
    }

    public OptionalInt retryAfter() {
        return retryAfter == null ? OptionalInt.empty() : OptionalInt.of(retryAfter);
    }
}
