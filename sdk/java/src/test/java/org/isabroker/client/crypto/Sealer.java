package org.isabroker.client.crypto;

import com.nimbusds.jose.EncryptionMethod;
import com.nimbusds.jose.JOSEObjectType;
import com.nimbusds.jose.JWEAlgorithm;
import com.nimbusds.jose.JWEHeader;
import com.nimbusds.jose.JWEObject;
import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.JWSHeader;
import com.nimbusds.jose.JWSObject;
import com.nimbusds.jose.Payload;
import com.nimbusds.jose.crypto.ECDHEncrypter;
import com.nimbusds.jose.crypto.ECDSASigner;
import com.nimbusds.jose.jwk.ECKey;
import java.nio.charset.StandardCharsets;

/** Seals a delivery as the broker does (for the tests only: the SDK never seals). */
public final class Sealer {
    private Sealer() {}

    public static String seal(String event, ECKey recipientKey, ECKey brokerKey, String messageId, String deliveryId,
            String recipient, String agreements) throws Exception {
        JWSHeader jwsHeader = new JWSHeader.Builder(JWSAlgorithm.ES256)
                .keyID(brokerKey.getKeyID())
                .type(new JOSEObjectType("isa-broker-event+jws"))
                .contentType("application/cloudevents+json")
                .customParam("isa_message_id", messageId)
                .customParam("isa_delivery_id", deliveryId)
                .customParam("isa_recipient", recipient)
                .customParam("isa_agreements", agreements)
                .build();
        JWSObject jws = new JWSObject(jwsHeader, new Payload(event.getBytes(StandardCharsets.UTF_8)));
        jws.sign(new ECDSASigner(brokerKey));
        JWEHeader jweHeader = new JWEHeader.Builder(JWEAlgorithm.ECDH_ES_A256KW, EncryptionMethod.A256GCM)
                .keyID(recipientKey.getKeyID())
                .type(new JOSEObjectType("isa-broker-delivery+jwe"))
                .contentType("isa-broker-event+jws")
                .customParam("isa_message_id", messageId)
                .customParam("isa_delivery_id", deliveryId)
                .customParam("isa_recipient", recipient)
                .customParam("isa_agreements", agreements)
                .build();
        JWEObject jwe = new JWEObject(jweHeader, new Payload(jws.serialize()));
        jwe.encrypt(new ECDHEncrypter(recipientKey.toPublicJWK()));
        return jwe.serialize();
    }

    public static String event(String messageId, String deliveryId, String recipient, String dutyId) {
        return "{\"specversion\":\"1.0\",\"id\":\"" + messageId + "\",\"source\":\"urn:isa-broker:party:hmp-northgate\","
                + "\"type\":\"org.isa-broker.release-notice.v1\",\"subject\":\"psn_0123456789abcdef0123456789abcdef\","
                + "\"isarecipient\":\"" + recipient + "\",\"isadeliveryid\":\"" + deliveryId + "\","
                + (dutyId == null ? "" : "\"isadutyid\":\"" + dutyId + "\",\"isadutydue\":\"2026-12-03T09:00:00Z\",")
                + "\"data\":{\"release\":{\"date\":\"2026-12-01\"}}}";
    }
}
