package org.isabroker.client;

import com.fasterxml.jackson.databind.JsonNode;

/** {@code 409}: {@code idempotency_key_reused}, {@code conflict}, {@code duty_cleared}, {@code no_kafka_subscription}, {@code encryption_key_in_use}. */
public class ConflictException extends ProblemException {
    private static final long serialVersionUID = 1L;

    ConflictException(int status, JsonNode body, Integer retryAfter) {
        super(status, body, retryAfter);
    }
}
