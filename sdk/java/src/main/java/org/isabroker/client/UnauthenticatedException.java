package org.isabroker.client;

import com.fasterxml.jackson.databind.JsonNode;

/** {@code 401 unauthenticated}: no token, an invalid or expired one, or a disabled client. The client fetches a new token and repeats the call once before throwing this. */
public class UnauthenticatedException extends ProblemException {
    private static final long serialVersionUID = 1L;

    UnauthenticatedException(int status, JsonNode body, Integer retryAfter) {
        super(status, body, retryAfter);
    }
}
