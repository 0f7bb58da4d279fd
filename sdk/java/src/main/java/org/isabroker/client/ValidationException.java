package org.isabroker.client;

import com.fasterxml.jackson.databind.JsonNode;

/** The body or a parameter failed validation ({@code 422 validation_failed}); {@link #fields()} holds the JSON pointers of the failing fields. */
public class ValidationException extends ProblemException {
    private static final long serialVersionUID = 1L;

    ValidationException(int status, JsonNode body, Integer retryAfter) {
        super(status, body, retryAfter);
    }
}
