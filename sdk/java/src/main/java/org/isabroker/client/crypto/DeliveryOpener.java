package org.isabroker.client.crypto;

import com.fasterxml.jackson.databind.JsonNode;
import com.nimbusds.jose.JOSEException;
import com.nimbusds.jose.JWEObject;
import com.nimbusds.jose.JWSObject;
import com.nimbusds.jose.crypto.ECDHDecrypter;
import com.nimbusds.jose.crypto.ECDSAVerifier;
import com.nimbusds.jose.jwk.ECKey;
import com.nimbusds.jose.jwk.JWK;
import com.nimbusds.jose.jwk.JWKSet;
import java.nio.charset.StandardCharsets;
import java.text.ParseException;
import java.util.Base64;
import java.util.Map;
import java.util.Objects;
import java.util.function.Function;
import org.isabroker.client.CloudEvent;
import org.isabroker.client.Json;

/**
 * Opens what the broker seals to your party: the records on your agency topic, and the bodies
 * of webhook subscriptions made with {@code "encrypt": true}.
 *
 * <p>A sealed delivery is a compact JWS ({@code ES256}) signed by the broker's delivery-signing
 * key, encrypted to your public key as a compact JWE ({@code ECDH-ES+A256KW}, {@code A256GCM}).
 * Both protected headers bind it to {@code isa_message_id}, {@code isa_delivery_id},
 * {@code isa_recipient} and {@code isa_agreements}. Opening makes every check the broker's own
 * reference helper makes, in the same order:
 *
 * <ol>
 *   <li>before decrypting: the algorithms, the binding members and {@code kid} are there; it
 *       is encrypted to <em>your</em> party, and bound to the same message and delivery as the
 *       record's headers (or the webhook's {@code webhook-id}) — else {@link MisroutedException};
 *   <li>it is encrypted to a key you hold, by {@code kid} — else {@link UnknownKeyException};
 *   <li>it decrypts — else {@link DeliveryOpenException} ({@code MALFORMED});
 *   <li>the content is a compact JWS, {@code ES256}, {@code typ isa-broker-event+jws},
 *       {@code cty application/cloudevents+json}, signed by a key the broker publishes
 *       ({@link BrokerKeys}, refreshed on an unknown {@code kid}), whose signature verifies and
 *       whose signed binding equals the encryption header's; the encryption header's
 *       {@code cty} is {@code isa-broker-event+jws} — else {@link NotSignedByBrokerException};
 *   <li>the CloudEvent inside carries the bound message id, and names no other recipient or
 *       delivery — else {@link MisroutedException}.
 * </ol>
 *
 * <p>Encryption alone would not say who wrote a delivery (your public key is no secret); the
 * signature does. It does not say when: the same delivery can arrive again (a lost
 * acknowledgement, a replay, a broker restart), so de-duplicate on the delivery id.
 *
 * <p>Thread-safe.
 */
public final class DeliveryOpener {
    public static final String ALG = "ECDH-ES+A256KW";
    public static final String ENC = "A256GCM";
    public static final String TYP = "isa-broker-delivery+jwe";
    public static final String SIGNED_TYP = "isa-broker-event+jws";
    public static final String CTY = "application/cloudevents+json";
    public static final String SIG_ALG = "ES256";
    /** The media type of a sealed record or webhook body. */
    public static final String CONTENT_TYPE = "application/jose";
    /** The Kafka record headers (ids, in clear) that the protected header must agree with. */
    public static final String RECORD_MESSAGE_HEADER = "isa_message_id";
    public static final String RECORD_DELIVERY_HEADER = "isa_delivery_id";

    static final String H_MESSAGE = "isa_message_id";
    static final String H_DELIVERY = "isa_delivery_id";
    static final String H_RECIPIENT = "isa_recipient";
    static final String H_AGREEMENTS = "isa_agreements";
    private static final String[] BINDING = {H_MESSAGE, H_DELIVERY, H_RECIPIENT, H_AGREEMENTS};
    private static final String[] BINDING_NAMES = {"message", "delivery", "recipient", "agreements"};
    static final int MAX_TOKEN_BYTES = 1_000_000;

    private final String recipient;
    private final JWKSet privateKeys;
    private final BrokerKeys brokerKeys;

    /**
     * @param recipient your own party id, e.g. {@code eastborough-vawg}
     * @param privateKeys every private key you still hold (rotation), each with its {@code kid}
     * @param brokerKeys the broker's delivery-signing keys
     */
    public DeliveryOpener(String recipient, JWKSet privateKeys, BrokerKeys brokerKeys) {
        this.recipient = Objects.requireNonNull(recipient, "recipient");
        RecipientKeys.check(Objects.requireNonNull(privateKeys, "privateKeys"));
        this.privateKeys = privateKeys;
        this.brokerKeys = Objects.requireNonNull(brokerKeys, "brokerKeys");
    }

    public String recipient() {
        return recipient;
    }

    /**
     * Opens a record consumed from your agency topic, checking it against the ids in its
     * headers. With kafka-clients:
     * {@code opener.openRecord(record.value(), name -> lastHeader(record, name))}.
     *
     * @param header the record header's value by name, or null when absent
     */
    public OpenedDelivery openRecord(byte[] value, Function<String, byte[]> header) {
        return open(value, text(header.apply(RECORD_MESSAGE_HEADER)), text(header.apply(RECORD_DELIVERY_HEADER)));
    }

    /** Opens a record consumed from your agency topic, its headers given as a map. */
    public OpenedDelivery openRecord(byte[] value, Map<String, byte[]> headers) {
        return openRecord(value, headers::get);
    }

    /**
     * Opens an encrypted webhook body (after its signature was verified over the body as
     * received), bound to the delivery named by {@code webhookId}.
     */
    public OpenedDelivery openWebhook(byte[] body, String webhookId) {
        return open(body, null, Objects.requireNonNull(webhookId, "webhookId"));
    }

    /**
     * Opens a sealed delivery. {@code messageId} and {@code deliveryId} are the ids the transport
     * carried (null when it carried none): a token bound to others is refused as misrouted.
     */
    public OpenedDelivery open(byte[] token, String messageId, String deliveryId) {
        if (token == null) {
            throw new DeliveryOpenException("no token");
        }
        if (token.length > MAX_TOKEN_BYTES) {
            throw new DeliveryOpenException("token is larger than " + MAX_TOKEN_BYTES + " bytes");
        }
        String compact = new String(token, StandardCharsets.US_ASCII);
        String[] parts = compact.split("\\.", -1);
        if (parts.length != 5) {
            throw new DeliveryOpenException("not a compact JWE (five dot-separated parts)");
        }
        JsonNode header = segment(parts[0], "protected header", false);
        if (!ALG.equals(Json.MAPPER.convertValue(header.get("alg"), String.class))
                || !ENC.equals(Json.MAPPER.convertValue(header.get("enc"), String.class))) {
            throw new DeliveryOpenException("unexpected algorithms alg=" + header.get("alg") + " enc="
                    + header.get("enc") + "; deliveries use " + ALG + " with " + ENC);
        }
        String[] binding = new String[4];
        for (int i = 0; i < 4; i++) {
            JsonNode v = header.get(BINDING[i]);
            if (v == null || !v.isTextual()) {
                throw new DeliveryOpenException("protected header lacks " + BINDING[i]);
            }
            binding[i] = v.asText();
        }
        JsonNode kidNode = header.get("kid");
        if (kidNode == null || !kidNode.isTextual()) {
            throw new DeliveryOpenException("protected header lacks kid");
        }
        String kid = kidNode.asText();
        if (!binding[2].equals(recipient)) {
            throw new MisroutedException("encrypted to '" + binding[2] + "', not to '" + recipient + "'");
        }
        if (messageId != null && !binding[0].equals(messageId)) {
            throw new MisroutedException("bound to message " + binding[0] + ", arrived as " + messageId);
        }
        if (deliveryId != null && !binding[1].equals(deliveryId)) {
            throw new MisroutedException("bound to delivery " + binding[1] + ", arrived as " + deliveryId);
        }
        JWK key = privateKeys.getKeyByKeyId(kid);
        if (!(key instanceof ECKey)) {
            throw new UnknownKeyException("encrypted to key '" + kid + "', which is not among the keys given");
        }
        byte[] signed;
        try {
            JWEObject jwe = JWEObject.parse(compact);
            jwe.decrypt(new ECDHDecrypter((ECKey) key));
            signed = jwe.getPayload().toBytes();
        } catch (ParseException | JOSEException | RuntimeException e) {
            throw new DeliveryOpenException("does not decrypt with key '" + kid + "': " + e.getMessage(), e);
        }
        if (signed == null || signed.length == 0) {
            throw new DeliveryOpenException("empty plaintext");
        }
        // decrypted, the encryption header is authentic: now who wrote the content
        Verified verified = verify(signed);
        JsonNode cty = header.get("cty");
        if (cty == null || !cty.isTextual() || !SIGNED_TYP.equals(cty.asText())) {
            throw new NotSignedByBrokerException("the encryption header's cty is " + cty);
        }
        for (int i = 0; i < 4; i++) {
            if (!binding[i].equals(verified.binding[i])) {
                throw new NotSignedByBrokerException("the broker signed it for " + BINDING_NAMES[i] + " '"
                        + verified.binding[i] + "', the encryption header says '" + binding[i]
                        + "': encrypted again by someone else");
            }
        }
        JsonNode event;
        try {
            event = Json.parse(verified.payload);
        } catch (RuntimeException e) {
            throw new DeliveryOpenException("the signed content is not JSON", e);
        }
        if (event == null || !event.isObject() || !event.path("id").isTextual()
                || !binding[0].equals(event.get("id").asText())) {
            throw new MisroutedException("the CloudEvent inside does not carry the message id of the header");
        }
        if (event.has("isarecipient") && !recipient.equals(textOrNull(event.get("isarecipient")))) {
            throw new MisroutedException("the CloudEvent inside is addressed to another recipient");
        }
        if (event.has("isadeliveryid") && !binding[1].equals(textOrNull(event.get("isadeliveryid")))) {
            throw new MisroutedException("the CloudEvent inside names another delivery than the header");
        }
        return new OpenedDelivery(binding[0], binding[1], binding[2], binding[3], kid, new CloudEvent(event),
                verified.payload, verified.kid, new String(signed, StandardCharsets.US_ASCII));
    }

    private static final class Verified {
        final String[] binding;
        final byte[] payload;
        final String kid;

        Verified(String[] binding, byte[] payload, String kid) {
            this.binding = binding;
            this.payload = payload;
            this.kid = kid;
        }
    }

    /** Checks that {@code signed} is a compact JWS of a CloudEvent signed by the broker. */
    private Verified verify(byte[] signed) {
        String compact = new String(signed, StandardCharsets.ISO_8859_1);
        String[] parts = compact.split("\\.", -1);
        if (parts.length != 3 || compact.startsWith("{") || compact.startsWith("[")) {
            throw new NotSignedByBrokerException("the decrypted content is not a JWS (three dot-separated "
                    + "parts): an unsigned event, which the broker never sends");
        }
        JsonNode header = segment(parts[0], "the signed header", true);
        if (!SIG_ALG.equals(textOrNull(header.get("alg")))) {
            throw new NotSignedByBrokerException("signed with alg " + header.get("alg") + "; the broker signs "
                    + SIG_ALG);
        }
        if (!SIGNED_TYP.equals(textOrNull(header.get("typ"))) || !CTY.equals(textOrNull(header.get("cty")))) {
            throw new NotSignedByBrokerException("signed content of typ " + header.get("typ") + " cty "
                    + header.get("cty") + ", not a broker event (" + SIGNED_TYP + ", " + CTY + ")");
        }
        JsonNode kidNode = header.get("kid");
        if (kidNode == null || !kidNode.isTextual()) {
            throw new NotSignedByBrokerException("the signed header names no kid");
        }
        String kid = kidNode.asText();
        ECKey key = brokerKeys.get(kid);
        if (key == null) {
            throw new NotSignedByBrokerException("signed with key '" + kid
                    + "', which is not among the broker's delivery-signing keys");
        }
        String[] binding = new String[4];
        for (int i = 0; i < 4; i++) {
            JsonNode v = header.get(BINDING[i]);
            if (v == null || !v.isTextual()) {
                throw new NotSignedByBrokerException("the signed header lacks " + BINDING[i]);
            }
            binding[i] = v.asText();
        }
        try {
            JWSObject jws = JWSObject.parse(compact);
            if (!jws.verify(new ECDSAVerifier(key))) {
                throw new NotSignedByBrokerException("the signature does not verify with the broker's key '" + kid + "'");
            }
            return new Verified(binding, jws.getPayload().toBytes(), kid);
        } catch (ParseException | JOSEException | IllegalStateException | IllegalArgumentException e) {
            throw new NotSignedByBrokerException("the signature does not verify with the broker's key '" + kid
                    + "': " + e.getMessage(), e);
        }
    }

    private static JsonNode segment(String segment, String what, boolean signedLayer) {
        JsonNode value;
        try {
            value = Json.parse(Base64.getUrlDecoder().decode(segment));
        } catch (RuntimeException e) {
            throw signedLayer ? new NotSignedByBrokerException(what + " is not base64url JSON", e)
                    : new DeliveryOpenException(what + " is not base64url JSON", e);
        }
        if (value == null || !value.isObject()) {
            throw signedLayer ? new NotSignedByBrokerException(what + " is not a JSON object")
                    : new DeliveryOpenException(what + " is not a JSON object");
        }
        return value;
    }

    private static String textOrNull(JsonNode v) {
        return v == null || !v.isTextual() ? null : v.asText();
    }

    private static String text(byte[] value) {
        return value == null ? null : new String(value, StandardCharsets.US_ASCII);
    }

    /** Whether a body is a sealed delivery, by its {@code content-type}. */
    public static boolean isSealed(String contentType) {
        return contentType != null && contentType.toLowerCase(java.util.Locale.ROOT).startsWith(CONTENT_TYPE);
    }

    /** The CloudEvent of a plain (unencrypted) webhook body or inbox entry. */
    public static CloudEvent plainEvent(byte[] body) {
        try {
            return new CloudEvent(Json.parse(body));
        } catch (RuntimeException e) {
            throw new DeliveryOpenException("the body is not a CloudEvent (JSON object)", e);
        }
    }
}
