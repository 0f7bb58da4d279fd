package org.isabroker.client.webhooks;

import com.standardwebhooks.Webhook;
import com.standardwebhooks.exceptions.EmptyWebhookSecretException;
import com.standardwebhooks.exceptions.WebhookSigningException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.MessageDigest;
import java.security.PublicKey;
import java.security.Signature;
import java.security.spec.X509EncodedKeySpec;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.function.Function;

/**
 * Verifies the Standard Webhooks signatures the broker puts on every webhook request: it signs
 * {@code {webhook-id}.{webhook-timestamp}.{raw body}} with
 *
 * <ul>
 *   <li>{@code v1}: HMAC-SHA256 keyed with the subscription's {@code whsec_} secret;
 *   <li>{@code v1a}: ed25519, verified with the subscription's {@code whpk_} public key.
 * </ul>
 *
 * A request is accepted when its {@code webhook-timestamp} is within the tolerance of the clock
 * (5 minutes by default) and <em>any</em> signature in {@code webhook-signature} verifies with
 * <em>any</em> key held: during a rotation's overlap the broker sends two signatures, the new
 * key's and the previous key's, so give both keys while you switch.
 *
 * <pre>{@code
 * WebhookVerifier verifier = WebhookVerifier.builder()
 *         .key("whsec_...")              // or "whpk_..." for a v1a subscription
 *         .build();
 * VerifiedWebhook hook = verifier.verify(headers, rawBody);   // or throws: answer 401
 * }</pre>
 *
 * Verify the raw bytes as received, before parsing: re-serialised JSON will not match. Thread-safe.
 */
public final class WebhookVerifier {
    public static final String SECRET_PREFIX = "whsec_";
    public static final String PUBLIC_KEY_PREFIX = "whpk_";
    public static final String SECRET_KEY_PREFIX = "whsk_";
    public static final Duration DEFAULT_TOLERANCE = Duration.ofMinutes(5);

    /** DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410 s4): the raw 32-byte key follows. */
    private static final byte[] ED25519_SPKI_PREFIX = {
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00
    };

    private final List<Object> keys; // Webhook (v1) or PublicKey (v1a), in the order given
    private final Duration tolerance;
    private final Clock clock;

    private WebhookVerifier(List<Object> keys, Duration tolerance, Clock clock) {
        this.keys = keys;
        this.tolerance = tolerance;
        this.clock = clock;
    }

    public static Builder builder() {
        return new Builder();
    }

    /** A verifier for these keys, with the default tolerance and the system clock. */
    public static WebhookVerifier of(String... keys) {
        Builder b = builder();
        for (String k : keys) {
            b.key(k);
        }
        return b.build();
    }

    /** Verifies a request whose headers are in a map (names matched case-insensitively). */
    public VerifiedWebhook verify(Map<String, String> headers, byte[] body) {
        return verify(name -> {
            for (Map.Entry<String, String> e : headers.entrySet()) {
                if (e.getKey() != null && e.getKey().equalsIgnoreCase(name)) {
                    return e.getValue();
                }
            }
            return null;
        }, body);
    }

    /**
     * Verifies a request; {@code header} looks up a request header by its lower-case name
     * (e.g. {@code exchange.getRequestHeaders()::getFirst}), null when absent.
     */
    public VerifiedWebhook verify(Function<String, String> header, byte[] body) {
        return verify(header.apply("webhook-id"), header.apply("webhook-timestamp"),
                header.apply("webhook-signature"), body);
    }

    /** Verifies a request from its three Standard Webhooks headers and its raw body. */
    public VerifiedWebhook verify(String id, String timestamp, String signatures, byte[] body) {
        Objects.requireNonNull(body, "body");
        if (id == null || id.isEmpty()) {
            throw new WebhookVerificationException(WebhookVerificationException.Kind.SIGNATURE,
                    "missing webhook-id header");
        }
        if (timestamp == null || !timestamp.matches("[0-9]{1,18}")) {
            throw new WebhookVerificationException(WebhookVerificationException.Kind.TIMESTAMP,
                    "missing or invalid webhook-timestamp header");
        }
        long ts = Long.parseLong(timestamp);
        long now = clock.instant().getEpochSecond();
        if (Math.abs(now - ts) > tolerance.getSeconds()) {
            throw new WebhookVerificationException(WebhookVerificationException.Kind.TIMESTAMP,
                    "webhook timestamp outside tolerance");
        }
        if (signatures == null || signatures.isBlank()) {
            throw new WebhookVerificationException(WebhookVerificationException.Kind.SIGNATURE,
                    "missing webhook-signature header");
        }
        String[] candidates = signatures.strip().split(" +");
        String text = utf8(body);
        byte[] content = null;
        for (int i = 0; i < keys.size(); i++) {
            Object key = keys.get(i);
            if (key instanceof Webhook) {
                if (text == null) {
                    continue; // the broker's bodies are text; no v1 signature covers other bytes
                }
                byte[] expected = v1(((Webhook) key), id, ts, text);
                for (String candidate : candidates) {
                    // constant time, as Standard Webhooks asks
                    if (MessageDigest.isEqual(candidate.getBytes(StandardCharsets.UTF_8), expected)) {
                        return new VerifiedWebhook(id, Instant.ofEpochSecond(ts), body.clone(), "v1", i);
                    }
                }
            } else {
                if (content == null) {
                    content = content(id, ts, body);
                }
                for (String candidate : candidates) {
                    if (candidate.startsWith("v1a,") && ed25519((PublicKey) key, content, candidate.substring(4))) {
                        return new VerifiedWebhook(id, Instant.ofEpochSecond(ts), body.clone(), "v1a", i);
                    }
                }
            }
        }
        throw new WebhookVerificationException(WebhookVerificationException.Kind.SIGNATURE,
                "no webhook signature matched");
    }

    /**
     * {@code v1,<base64 HMAC-SHA256>}, computed by the Standard Webhooks reference library
     * ({@code com.standardwebhooks:standardwebhooks}). Its own {@code verify} is not used: it
     * reads the wall clock with a fixed five-minute tolerance, where this class takes an
     * injectable {@link Clock} and a tolerance, and it checks one secret at a time.
     */
    private static byte[] v1(Webhook webhook, String id, long timestamp, String text) {
        try {
            return webhook.sign(id, timestamp, text).getBytes(StandardCharsets.UTF_8);
        } catch (WebhookSigningException e) {
            throw new IllegalStateException("HmacSHA256 unavailable", e);
        }
    }

    private static boolean ed25519(PublicKey key, byte[] content, String encoded) {
        byte[] signature;
        try {
            signature = Base64.getDecoder().decode(encoded);
        } catch (IllegalArgumentException e) {
            return false;
        }
        if (signature.length != 64) {
            return false;
        }
        try {
            Signature verifier = Signature.getInstance("Ed25519");
            verifier.initVerify(key);
            verifier.update(content);
            return verifier.verify(signature);
        } catch (GeneralSecurityException e) {
            return false;
        }
    }

    private static byte[] content(String id, long timestamp, byte[] body) {
        byte[] prefix = (id + "." + timestamp + ".").getBytes(StandardCharsets.UTF_8);
        byte[] out = new byte[prefix.length + body.length];
        System.arraycopy(prefix, 0, out, 0, prefix.length);
        System.arraycopy(body, 0, out, prefix.length, body.length);
        return out;
    }

    private static String utf8(byte[] body) {
        try {
            return StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(body))
                    .toString();
        } catch (CharacterCodingException e) {
            return null;
        }
    }

    static Object parseKey(String key) {
        Objects.requireNonNull(key, "key");
        if (key.startsWith(SECRET_KEY_PREFIX)) {
            throw new IllegalArgumentException("verify v1a signatures with the whpk_ public key, not the whsk_ secret key");
        }
        if (key.startsWith(PUBLIC_KEY_PREFIX)) {
            byte[] raw = decode(key.substring(PUBLIC_KEY_PREFIX.length()), "whpk_ key");
            if (raw.length != 32) {
                throw new IllegalArgumentException("a whpk_ key must decode to 32 bytes");
            }
            byte[] der = new byte[ED25519_SPKI_PREFIX.length + 32];
            System.arraycopy(ED25519_SPKI_PREFIX, 0, der, 0, ED25519_SPKI_PREFIX.length);
            System.arraycopy(raw, 0, der, ED25519_SPKI_PREFIX.length, 32);
            try {
                return KeyFactory.getInstance("Ed25519").generatePublic(new X509EncodedKeySpec(der));
            } catch (GeneralSecurityException e) {
                throw new IllegalArgumentException("not an ed25519 public key", e);
            }
        }
        String secret = key.startsWith(SECRET_PREFIX) ? key.substring(SECRET_PREFIX.length()) : key;
        byte[] raw = decode(secret, "webhook secret");
        try {
            return new Webhook(raw);
        } catch (EmptyWebhookSecretException e) {
            throw new IllegalArgumentException("webhook secret must decode to at least 1 byte", e);
        }
    }

    private static byte[] decode(String b64, String what) {
        byte[] raw;
        try {
            raw = Base64.getDecoder().decode(b64);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(what + " is not valid base64");
        }
        if (raw.length == 0) {
            throw new IllegalArgumentException(what + " must decode to at least 1 byte");
        }
        return raw;
    }

    /** The keys and the clock. */
    public static final class Builder {
        private final List<Object> keys = new ArrayList<>();
        private Duration tolerance = DEFAULT_TOLERANCE;
        private Clock clock = Clock.systemUTC();

        private Builder() {}

        /**
         * A key to verify with: a {@code whsec_} secret ({@code v1}) or a {@code whpk_} public
         * key ({@code v1a}). Give several during a rotation.
         */
        public Builder key(String key) {
            keys.add(parseKey(key));
            return this;
        }

        public Builder keys(Iterable<String> keys) {
            keys.forEach(this::key);
            return this;
        }

        /** The largest accepted distance between {@code webhook-timestamp} and the clock. */
        public Builder tolerance(Duration tolerance) {
            if (tolerance.isNegative()) {
                throw new IllegalArgumentException("tolerance must not be negative");
            }
            this.tolerance = tolerance;
            return this;
        }

        public Builder clock(Clock clock) {
            this.clock = Objects.requireNonNull(clock);
            return this;
        }

        public WebhookVerifier build() {
            if (keys.isEmpty()) {
                throw new IllegalStateException("give at least one key (whsec_ or whpk_)");
            }
            return new WebhookVerifier(List.copyOf(keys), tolerance, clock);
        }
    }

    @Override
    public String toString() {
        return "WebhookVerifier{keys=" + keys.size() + ", tolerance=" + tolerance.toString().toLowerCase(Locale.ROOT) + "}";
    }
}
