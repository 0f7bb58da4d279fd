package org.isabroker.client;

import java.time.Instant;
import java.util.List;

/**
 * An acknowledgement duty: an agreement's flow requires {@link #recipient()} to acknowledge
 * message {@link #messageId()} by {@link #dueAt()}, or the broker escalates.
 *
 * @param status open, acknowledged, escalated or cleared
 * @param allowedActions the action codes {@code acknowledge} accepts, e.g. victim_contacted
 */
public record Duty(
        String id,
        String messageId,
        String messageType,
        String sender,
        String recipient,
        String agreement,
        String flow,
        String rule,
        List<String> escalateTo,
        Instant dueAt,
        String status,
        Boolean overdue,
        Instant createdAt,
        Instant acknowledgedAt,
        String acknowledgedBy,
        String action,
        Boolean late,
        Instant escalatedAt,
        List<String> allowedActions) {

    /** A page of duties; pass {@code nextOffset} to read on (null: no more). */
    public record Page(List<Duty> duties, Integer nextOffset) {}
}
