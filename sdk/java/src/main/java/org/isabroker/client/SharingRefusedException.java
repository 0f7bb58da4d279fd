package org.isabroker.client;

import com.fasterxml.jackson.databind.JsonNode;

/** No agreement in force permits the share ({@code 403 sharing_refused}). {@link #reason()} says which check failed, {@link #clause()} names the first agreement clause involved, and {@code rules} in {@link #body()} lists every candidate flow. Every refusal is in the broker's disclosure log. */
public class SharingRefusedException extends ProblemException {
    private static final long serialVersionUID = 1L;

    SharingRefusedException(int status, JsonNode body, Integer retryAfter) {
        super(status, body, retryAfter);
    }
}
