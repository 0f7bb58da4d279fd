package org.isabroker.client;

import com.fasterxml.jackson.annotation.JsonCreator;
import com.fasterxml.jackson.annotation.JsonValue;
import com.fasterxml.jackson.databind.JsonNode;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.Optional;

/**
 * A structured CloudEvent 1.0 as the broker delivers it, by webhook, inbox or agency topic.
 * {@link #data()} is your projection of the message: only the fields your agreements permit,
 * so do not validate it against the publisher's schema.
 */
public final class CloudEvent {
    private final JsonNode json;

    @JsonCreator(mode = JsonCreator.Mode.DELEGATING)
    public CloudEvent(JsonNode json) {
        if (json == null || !json.isObject()) {
            throw new IllegalArgumentException("a CloudEvent is a JSON object");
        }
        this.json = json;
    }

    /** The message id (the same for every recipient, and in the publisher's 202). */
    public String id() {
        return Json.text(json, "id");
    }

    /** e.g. {@code org.isa-broker.release-notice.v1}. */
    public String type() {
        return Json.text(json, "type");
    }

    /** {@code urn:isa-broker:party:<sender>}, or {@code urn:isa-broker:scheduler} / {@code :router}. */
    public String source() {
        return Json.text(json, "source");
    }

    /** The keyed pseudonym of the person ({@code psn_...}); a message id for broker events. */
    public String subject() {
        return Json.text(json, "subject");
    }

    public Optional<Instant> time() {
        return instant("time");
    }

    /** {@code isarecipient}: your party id. */
    public String recipient() {
        return Json.text(json, "isarecipient");
    }

    /** {@code isadeliveryid}: the delivery id, equal to {@code webhook-id}. */
    public String deliveryId() {
        return Json.text(json, "isadeliveryid");
    }

    /** {@code isaagreements}: the agreements permitting this delivery, {@code ID@version,...}. */
    public String agreements() {
        return Json.text(json, "isaagreements");
    }

    /** {@code isalifecycle}: original, amended, cancelled, released or outcome. */
    public String lifecycle() {
        return Json.text(json, "isalifecycle");
    }

    /** {@code isarefersto}: on an update, the original message's id. */
    public String refersTo() {
        return Json.text(json, "isarefersto");
    }

    /**
     * The acknowledgement duties this delivery puts on you ({@code isadutyid}, comma-separated,
     * earliest due first); empty when there is nothing to acknowledge.
     */
    public List<String> dutyIds() {
        List<String> out = new ArrayList<>();
        String ids = Json.text(json, "isadutyid");
        if (ids != null) {
            for (String id : ids.split(",")) {
                if (!id.isBlank()) {
                    out.add(id.strip());
                }
            }
        }
        return out;
    }

    /** {@code isadutydue}: when the earliest duty is due. */
    public Optional<Instant> dutyDue() {
        return instant("isadutydue");
    }

    /** The projection: your permitted fields only. */
    public JsonNode data() {
        return json.path("data");
    }

    /** An attribute by name (extension attributes included), if present. */
    public Optional<String> attribute(String name) {
        return Optional.ofNullable(Json.text(json, name));
    }

    /** The whole event. */
    @JsonValue
    public JsonNode json() {
        return json;
    }

    private Optional<Instant> instant(String name) {
        String v = Json.text(json, name);
        return v == null ? Optional.empty() : Optional.of(Instant.parse(v));
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof CloudEvent && ((CloudEvent) o).json.equals(json);
    }

    @Override
    public int hashCode() {
        return Objects.hash(json);
    }

    @Override
    public String toString() {
        return "CloudEvent{id=" + id() + ", type=" + type() + ", deliveryId=" + deliveryId() + "}";
    }
}
