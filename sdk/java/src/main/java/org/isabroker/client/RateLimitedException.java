package org.isabroker.client;

import com.fasterxml.jackson.databind.JsonNode;

/** {@code 429 rate_limited}: wait {@link #retryAfter()} seconds before sending again. */
public class RateLimitedException extends ProblemException {
    private static final long serialVersionUID = 1L;

    RateLimitedException(int status, JsonNode body, Integer retryAfter) {
        super(status, body, retryAfter);
    }
}
