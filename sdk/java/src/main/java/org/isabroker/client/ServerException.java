package org.isabroker.client;

import com.fasterxml.jackson.databind.JsonNode;

/** A {@code 5xx}: the broker could not act. Repeat later (a publish with the same {@code Idempotency-Key}). */
public class ServerException extends ProblemException {
    private static final long serialVersionUID = 1L;

    ServerException(int status, JsonNode body, Integer retryAfter) {
        super(status, body, retryAfter);
    }
}
