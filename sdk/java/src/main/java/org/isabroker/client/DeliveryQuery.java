package org.isabroker.client;

import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.Map;

/** Filters for {@code GET /v1/deliveries} and {@code GET /v1/dead-letters}; all optional. */
public final class DeliveryQuery {
    private final Map<String, String> params = new LinkedHashMap<>();

    public static DeliveryQuery all() {
        return new DeliveryQuery();
    }

    /** pending, retrying, delivered, dead_lettered, withheld or no_channel (deliveries only). */
    public DeliveryQuery status(String status) {
        params.put("status", status);
        return this;
    }

    public DeliveryQuery subscriptionId(String id) {
        params.put("subscription_id", id);
        return this;
    }

    /** Deliveries only. */
    public DeliveryQuery messageId(String id) {
        params.put("message_id", id);
        return this;
    }

    public DeliveryQuery since(Instant since) {
        params.put("since", since.toString());
        return this;
    }

    public DeliveryQuery until(Instant until) {
        params.put("until", until.toString());
        return this;
    }

    /** 1 to 1000 (default 100). */
    public DeliveryQuery limit(int limit) {
        params.put("limit", Integer.toString(limit));
        return this;
    }

    Map<String, String> params() {
        return params;
    }
}
