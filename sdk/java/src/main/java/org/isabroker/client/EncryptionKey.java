package org.isabroker.client;

import com.fasterxml.jackson.databind.JsonNode;
import java.time.Instant;

/**
 * A public encryption key of your party, as the broker holds it. Compare {@link #thumbprint()}
 * (RFC 7638) out of band with your own record of the key.
 */
public record EncryptionKey(
        String kid, String thumbprint, JsonNode jwk, Instant createdAt, String createdBy, Instant retiredAt,
        boolean current) {}
