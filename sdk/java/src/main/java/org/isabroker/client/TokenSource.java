package org.isabroker.client;

/**
 * Where the client gets its access tokens. {@link ClientCredentials} fetches them from the
 * broker's token endpoint; implement this yourself to use tokens from your own identity
 * provider (the broker's {@code external_oidc} clients).
 */
public interface TokenSource {
    /** A valid access token, fetched or refreshed as needed. Must be thread-safe. */
    String accessToken();

    /**
     * The broker answered 401 to {@code token}: forget it, so that the next
     * {@link #accessToken()} fetches a new one.
     */
    default void invalidate(String token) {}
}
