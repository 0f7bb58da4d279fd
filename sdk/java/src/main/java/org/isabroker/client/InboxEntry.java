package org.isabroker.client;

/**
 * One entry of your inbox.
 *
 * @param cursor its position: acknowledge it to move your reading cursor past it
 * @param kind {@code message} (a delivery to an inbox subscription) or {@code notice} (from the broker)
 * @param deliveryId the delivery id of a message (de-duplicate on it); null for a notice
 */
public record InboxEntry(long cursor, String kind, String deliveryId, CloudEvent event) {
    public boolean isMessage() {
        return "message".equals(kind);
    }

    public boolean isNotice() {
        return "notice".equals(kind);
    }
}
