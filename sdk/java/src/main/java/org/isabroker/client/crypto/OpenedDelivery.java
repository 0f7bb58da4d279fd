package org.isabroker.client.crypto;

import java.util.Arrays;
import org.isabroker.client.CloudEvent;

/**
 * A sealed delivery opened and checked by {@link DeliveryOpener}.
 *
 * @param messageId the message (CloudEvent {@code id}) it is bound to
 * @param deliveryId the delivery it is bound to (de-duplicate on it)
 * @param recipient your party
 * @param agreements the agreements ({@code id@version}, comma-separated) that permitted it
 * @param kid your key it was encrypted to
 * @param event the CloudEvent, as the broker signed it
 * @param signedBy the broker's delivery-signing key id that signed it
 * @param signed the compact JWS: keep it to show later that the broker sent you this event
 */
public record OpenedDelivery(
        String messageId,
        String deliveryId,
        String recipient,
        String agreements,
        String kid,
        CloudEvent event,
        byte[] plaintext,
        String signedBy,
        String signed) {

    @Override
    public byte[] plaintext() {
        return plaintext.clone();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof OpenedDelivery && ((OpenedDelivery) o).signed.equals(signed)
                && ((OpenedDelivery) o).kid.equals(kid) && Arrays.equals(((OpenedDelivery) o).plaintext, plaintext);
    }

    @Override
    public int hashCode() {
        return signed.hashCode();
    }

    @Override
    public String toString() {
        return "OpenedDelivery{messageId=" + messageId + ", deliveryId=" + deliveryId + ", kid=" + kid
                + ", signedBy=" + signedBy + "}";
    }
}
