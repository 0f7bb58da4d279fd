package org.isabroker.client.crypto;

import com.nimbusds.jose.JOSEException;
import com.nimbusds.jose.JWEAlgorithm;
import com.nimbusds.jose.jwk.Curve;
import com.nimbusds.jose.jwk.ECKey;
import com.nimbusds.jose.jwk.JWK;
import com.nimbusds.jose.jwk.JWKSet;
import com.nimbusds.jose.jwk.KeyUse;
import com.nimbusds.jose.jwk.gen.ECKeyGenerator;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.text.ParseException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Your party's encryption keys: the EC key pairs whose public halves you register with
 * {@code POST /v1/encryption-keys}, and whose private halves open what the broker seals to you.
 * Keep the private keys secret (file mode 0600, or a vault) and keep each one until every
 * record sealed to it is consumed.
 */
public final class RecipientKeys {
    private RecipientKeys() {}

    /** A new P-256 key pair with this {@code kid} ({@code use: enc}, {@code alg: ECDH-ES+A256KW}). */
    public static ECKey generate(String kid) {
        if (kid == null || !BrokerKeys.KID.matcher(kid).matches()) {
            throw new IllegalArgumentException("kid must be 1 to 64 characters of A-Z a-z 0-9 . _ : -");
        }
        try {
            return new ECKeyGenerator(Curve.P_256)
                    .keyID(kid)
                    .keyUse(KeyUse.ENCRYPTION)
                    .algorithm(JWEAlgorithm.ECDH_ES_A256KW)
                    .generate();
        } catch (JOSEException e) {
            throw new IllegalStateException("could not generate a P-256 key", e);
        }
    }

    /** The public half as a JSON object, to register ({@code {"jwk": ...}}) or to give out. */
    public static Map<String, Object> publicJwk(ECKey key) {
        return key.toPublicJWK().toJSONObject();
    }

    /**
     * Private keys from a file holding one private JWK or a JWK set of them (each with its
     * {@code kid}), e.g. what {@link #save} wrote.
     */
    public static JWKSet load(Path path) {
        try {
            return parse(Files.readString(path, StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Private keys from JSON text: one private JWK, or a JWK set. */
    public static JWKSet parse(String json) {
        try {
            JWKSet set = json.contains("\"keys\"") ? JWKSet.parse(json) : new JWKSet(JWK.parse(json));
            check(set);
            return set;
        } catch (ParseException e) {
            throw new IllegalArgumentException("not a JWK or JWK set: " + e.getMessage(), e);
        }
    }

    /** Writes the private keys as a JWK set, readable by the owner only where the file system allows. */
    public static void save(JWKSet keys, Path path) {
        try {
            Files.writeString(path, keys.toString(false), StandardCharsets.UTF_8);
            try {
                Files.setPosixFilePermissions(path, java.nio.file.attribute.PosixFilePermissions.fromString("rw-------"));
            } catch (UnsupportedOperationException notPosix) {
                // e.g. Windows: protect the file by other means
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static void check(JWKSet set) {
        List<String> bad = new ArrayList<>();
        for (JWK k : set.getKeys()) {
            if (!(k instanceof ECKey) || !k.isPrivate() || k.getKeyID() == null) {
                bad.add(String.valueOf(k.getKeyID()));
            }
        }
        if (!bad.isEmpty() || set.getKeys().isEmpty()) {
            throw new IllegalArgumentException("each key must be a private EC JWK with a kid; not so: " + bad);
        }
    }
}
