package org.isabroker.client.crypto;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.nimbusds.jose.jwk.Curve;
import com.nimbusds.jose.jwk.ECKey;
import com.nimbusds.jose.jwk.JWKSet;
import com.nimbusds.jose.jwk.gen.ECKeyGenerator;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DeliveryOpenerTest {
    private static final String PARTY = "eastborough-vawg";
    private static final URI URL = URI.create("https://isa-broker.example/.well-known/delivery-signing-keys.json");

    private static ECKey brokerKey(String kid) throws Exception {
        return new ECKeyGenerator(Curve.P_256).keyID(kid).generate();
    }

    private static String jwks(ECKey... keys) {
        StringBuilder sb = new StringBuilder("{\"keys\":[");
        for (int i = 0; i < keys.length; i++) {
            sb.append(i == 0 ? "" : ",").append(keys[i].toPublicJWK().toJSONString());
        }
        return sb.append("]}").toString();
    }

    private static byte[] seal(ECKey agency, ECKey broker) throws Exception {
        return Sealer.seal(Sealer.event("m1", "d1", PARTY, "dut_1"), agency, broker, "m1", "d1", PARTY, "ISA-EB-020@1.2")
                .getBytes(StandardCharsets.US_ASCII);
    }

    @Test
    void opensARecordAndKeepsTheSignature() throws Exception {
        ECKey agency = RecipientKeys.generate("vawg-2026-12");
        ECKey broker = brokerKey("b1");
        DeliveryOpener opener = new DeliveryOpener(PARTY, new JWKSet(agency), BrokerKeys.of(jwks(broker)));
        OpenedDelivery o = opener.openRecord(seal(agency, broker), Map.of(
                "isa_message_id", "m1".getBytes(StandardCharsets.US_ASCII),
                "isa_delivery_id", "d1".getBytes(StandardCharsets.US_ASCII)));
        assertEquals("m1", o.event().id());
        assertEquals(List.of("dut_1"), o.event().dutyIds());
        assertEquals("ISA-EB-020@1.2", o.agreements());
        assertEquals("b1", o.signedBy());
        assertEquals("vawg-2026-12", o.kid());
        assertEquals(3, o.signed().split("\\.").length, "the JWS to keep");
        // a record without the id headers is still checked against its own binding
        assertEquals("d1", opener.openRecord(seal(agency, broker), Map.of()).deliveryId());
        assertThrows(MisroutedException.class, () -> opener.openWebhook(seal(agency, broker), "d2"));
        DeliveryOpener other = new DeliveryOpener("eastborough-housing", new JWKSet(agency), BrokerKeys.of(jwks(broker)));
        assertThrows(MisroutedException.class, () -> other.openWebhook(seal(agency, broker), "d1"));
    }

    @Test
    void aRotatedBrokerKeyIsFetchedOnceItSigns() throws Exception {
        ECKey agency = RecipientKeys.generate("k");
        ECKey oldKey = brokerKey("b1");
        ECKey newKey = brokerKey("b2");
        AtomicReference<String> published = new AtomicReference<>(jwks(oldKey));
        AtomicInteger fetches = new AtomicInteger();
        Clock[] clock = {Clock.fixed(Instant.parse("2026-01-15T09:30:00Z"), ZoneOffset.UTC)};
        BrokerKeys keys = BrokerKeys.builder().url(URL).refreshInterval(Duration.ofMinutes(5))
                .fetcher(u -> {
                    fetches.incrementAndGet();
                    return published.get().getBytes(StandardCharsets.UTF_8);
                })
                .clock(new Clock() {
                    @Override
                    public java.time.ZoneId getZone() {
                        return ZoneOffset.UTC;
                    }

                    @Override
                    public Clock withZone(java.time.ZoneId zone) {
                        return this;
                    }

                    @Override
                    public Instant instant() {
                        return clock[0].instant();
                    }
                }).build();
        assertEquals(1, fetches.get());
        DeliveryOpener opener = new DeliveryOpener(PARTY, new JWKSet(agency), keys);
        opener.openWebhook(seal(agency, oldKey), "d1");
        // a key the broker does not publish (yet): looked for once, then not again for 5 minutes
        assertThrows(NotSignedByBrokerException.class, () -> opener.openWebhook(seal(agency, newKey), "d1"));
        assertThrows(NotSignedByBrokerException.class, () -> opener.openWebhook(seal(agency, newKey), "d1"));
        assertEquals(1, fetches.get(), "fetched at build; the refresh interval had not passed");
        published.set(jwks(oldKey, newKey));
        clock[0] = Clock.offset(clock[0], Duration.ofMinutes(5));
        assertEquals("b2", opener.openWebhook(seal(agency, newKey), "d1").signedBy());
        assertEquals(2, fetches.get());
        // the broker withdrew the old key: it stops being accepted after the next refresh
        published.set(jwks(newKey));
        clock[0] = Clock.offset(clock[0], Duration.ofMinutes(5));
        ECKey third = brokerKey("b3");
        assertThrows(NotSignedByBrokerException.class, () -> opener.openWebhook(seal(agency, third), "d1"));
        assertThrows(NotSignedByBrokerException.class, () -> opener.openWebhook(seal(agency, oldKey), "d1"));
        // the keys cannot be fetched: the delivery may be genuine, try later
        clock[0] = Clock.offset(clock[0], Duration.ofMinutes(5));
        BrokerKeys failing = BrokerKeys.builder().jwks(jwks(newKey)).url(URL)
                .fetcher(u -> {
                    throw new java.io.UncheckedIOException(new java.io.IOException("connection refused"));
                }).build();
        DeliveryOpener offline = new DeliveryOpener(PARTY, new JWKSet(agency), failing);
        assertEquals(DeliveryOpenException.Kind.BROKER_KEYS_UNAVAILABLE,
                assertThrows(BrokerKeysUnavailableException.class, () -> offline.openWebhook(seal(agency, third), "d1")).kind());
    }

    @Test
    void brokerKeysArePinnedAndChecked(@TempDir Path dir) throws Exception {
        ECKey broker = brokerKey("b1");
        Path file = dir.resolve("broker.jwks.json");
        Files.writeString(file, jwks(broker));
        String thumbprint = broker.computeThumbprint().toString();
        assertEquals(Map.of("b1", thumbprint), BrokerKeys.fromFile(file, List.of(thumbprint)).thumbprints());
        assertThrows(IllegalArgumentException.class, () -> BrokerKeys.fromFile(file, List.of("another")));
        assertThrows(IllegalArgumentException.class, () -> BrokerKeys.of("{\"keys\":[" + broker.toJSONString() + "]}"),
                "a private key is refused");
        assertThrows(IllegalArgumentException.class, () -> BrokerKeys.of("{\"keys\":[]}"));
        ECKey p384 = new ECKeyGenerator(Curve.P_384).keyID("b2").generate();
        assertThrows(IllegalArgumentException.class, () -> BrokerKeys.of(jwks(p384)));
        assertThrows(IllegalArgumentException.class,
                () -> BrokerKeys.builder().url(URI.create("http://isa-broker.example/x")).build(), "https only");
    }

    @Test
    void recipientKeysRoundTrip(@TempDir Path dir) throws Exception {
        ECKey key = RecipientKeys.generate("vawg-2026-12");
        assertEquals("enc", key.getKeyUse().getValue());
        assertTrue(!RecipientKeys.publicJwk(key).containsKey("d"));
        Path file = dir.resolve("keys.json");
        RecipientKeys.save(new JWKSet(key), file);
        assertEquals(key, RecipientKeys.load(file).getKeyByKeyId("vawg-2026-12"));
        assertThrows(IllegalArgumentException.class, () -> RecipientKeys.generate("bad kid"));
        assertThrows(IllegalArgumentException.class, () -> new DeliveryOpener(PARTY, new JWKSet(key.toPublicJWK()),
                BrokerKeys.of(jwks(brokerKey("b")))));
    }
}
