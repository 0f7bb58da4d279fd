package org.isabroker.client;

import com.fasterxml.jackson.databind.JsonNode;

/** {@code 404}: no such resource of yours (another agency's ids answer the same way). */
public class NotFoundException extends ProblemException {
    private static final long serialVersionUID = 1L;

    NotFoundException(int status, JsonNode body, Integer retryAfter) {
        super(status, body, retryAfter);
    }
}
