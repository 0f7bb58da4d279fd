package org.isabroker.client;

import com.fasterxml.jackson.databind.JsonNode;

/** {@code 403 insufficient_scope}: the client lacks the scope the call needs; {@link #requiredScope()} names it. */
public class InsufficientScopeException extends ProblemException {
    private static final long serialVersionUID = 1L;

    InsufficientScopeException(int status, JsonNode body, Integer retryAfter) {
        super(status, body, retryAfter);
    }

    /** The scope the operation needs. */
    public String requiredScope() {
        return Json.text(body(), "required_scope");
    }
}
