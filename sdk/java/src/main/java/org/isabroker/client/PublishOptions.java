package org.isabroker.client;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * How to publish: the {@code Idempotency-Key} and the purposes of the share.
 *
 * <pre>{@code
 * PublishOptions.idempotencyKey(notice.uuid()).purposes("resettlement", "victim-safety")
 * }</pre>
 */
public final class PublishOptions {
    private final String idempotencyKey;
    private final List<String> purposes;

    private PublishOptions(String idempotencyKey, List<String> purposes) {
        this.idempotencyKey = idempotencyKey;
        this.purposes = List.copyOf(purposes);
    }

    /** No key given (the client makes a fresh one for this call) and every purpose allowed. */
    public static PublishOptions defaults() {
        return new PublishOptions(null, List.of());
    }

    /**
     * The {@code Idempotency-Key} (1 to 200 characters; a UUID is a good choice). Keep it with
     * the event, and send the same request again with the same key after a timeout, a dropped
     * connection, a 429 or a 5xx: the broker answers the original 202 instead of creating a
     * second message (within 24 hours, by default).
     */
    public static PublishOptions idempotencyKey(String key) {
        return defaults().withIdempotencyKey(key);
    }

    public PublishOptions withIdempotencyKey(String key) {
        Objects.requireNonNull(key, "key");
        if (key.isEmpty() || key.length() > 200) {
            throw new IllegalArgumentException("an Idempotency-Key has 1 to 200 characters");
        }
        return new PublishOptions(key, purposes);
    }

    /**
     * The purposes of the share (the {@code purpose} query parameter, at most 10), such as
     * {@code resettlement}: only flows with one of them are used. Without any, every purpose an
     * agreement in force lets your party use applies.
     */
    public PublishOptions purposes(String... purposes) {
        List<String> all = new ArrayList<>(this.purposes);
        all.addAll(List.of(purposes));
        if (all.size() > 10) {
            throw new IllegalArgumentException("at most 10 purposes");
        }
        return new PublishOptions(idempotencyKey, all);
    }

    public String idempotencyKey() {
        return idempotencyKey;
    }

    public List<String> purposes() {
        return purposes;
    }
}
