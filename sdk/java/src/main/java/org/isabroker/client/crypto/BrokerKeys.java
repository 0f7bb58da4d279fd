package org.isabroker.client.crypto;

import com.fasterxml.jackson.databind.JsonNode;
import com.nimbusds.jose.JOSEException;
import com.nimbusds.jose.jwk.Curve;
import com.nimbusds.jose.jwk.ECKey;
import com.nimbusds.jose.jwk.JWK;
import com.nimbusds.jose.jwk.JWKSet;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.text.ParseException;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeSet;
import java.util.function.Function;
import java.util.regex.Pattern;
import org.isabroker.client.Json;

/**
 * The broker's delivery-signing public keys, that {@link DeliveryOpener} checks signatures with.
 * They are published without authentication at
 * {@code GET /.well-known/delivery-signing-keys.json}; they are not the keys of
 * {@code /.well-known/jwks.json}, which sign access tokens.
 *
 * <p>Pin them: save the JWK set once, compare each key's {@link #thumbprints() thumbprint}
 * (RFC 7638, SHA-256) with the list the broker's operators give you out of band, and load the
 * file with {@link #fromFile(Path, Collection)}. Given a URL ({@link Builder#url}), a delivery
 * signed with a key id not yet known makes it fetch the set again (https only, unless
 * {@link Builder#allowHttp} for local development; redirects are not followed), at most once
 * per {@link Builder#refreshInterval} (5 minutes by default): the broker publishes a next key
 * before it signs with it, so the refresh finds it. The fetched set replaces the one held, so
 * a key the broker withdrew stops being accepted. Without a URL the set never changes.
 *
 * <p>Thread-safe.
 */
public final class BrokerKeys {
    /** Where the broker publishes them, under its public URL. */
    public static final String WELL_KNOWN_PATH = "/.well-known/delivery-signing-keys.json";

    static final Pattern KID = Pattern.compile("^[A-Za-z0-9._:-]{1,64}$");
    static final int MAX_JWKS_BYTES = 64 * 1024;

    private final URI url;
    private final Duration refreshInterval;
    private final Function<URI, byte[]> fetch;
    private final Clock clock;
    private Map<String, ECKey> keys;
    private Instant refreshed;

    private BrokerKeys(Map<String, ECKey> keys, URI url, Duration refreshInterval, Function<URI, byte[]> fetch,
            Clock clock, Instant refreshed) {
        this.keys = keys;
        this.url = url;
        this.refreshInterval = refreshInterval;
        this.fetch = fetch;
        this.clock = clock;
        this.refreshed = refreshed;
    }

    /** The keys of a JWK set (JSON text), held as given: never refreshed. */
    public static BrokerKeys of(String jwksJson) {
        return builder().jwks(jwksJson).build();
    }

    /** The keys of a JWK set, held as given: never refreshed. */
    public static BrokerKeys of(JWKSet jwks) {
        return of(jwks.toString(true));
    }

    /**
     * The JWK set saved in {@code path}, never refreshed. With {@code thumbprints} (RFC 7638, as
     * the broker's operators give them), every key in the file must have one of them.
     */
    public static BrokerKeys fromFile(Path path, Collection<String> thumbprints) {
        return builder().file(path).pinnedThumbprints(thumbprints).build();
    }

    /**
     * The keys fetched now from the broker at {@code gatewayUrl}
     * ({@code <gatewayUrl>/.well-known/delivery-signing-keys.json}), refreshed from there on an
     * unknown key id.
     */
    public static Builder fromGateway(URI gatewayUrl) {
        String base = gatewayUrl.toString().replaceAll("/+$", "");
        return builder().url(URI.create(base + WELL_KNOWN_PATH));
    }

    public static Builder builder() {
        return new Builder();
    }

    /** Each key's RFC 7638 SHA-256 thumbprint (base64url), by kid. */
    public synchronized Map<String, String> thumbprints() {
        Map<String, String> out = new LinkedHashMap<>();
        keys.forEach((kid, key) -> out.put(kid, thumbprint(key)));
        return out;
    }

    /** The keys held, as a JWK set (to save them). */
    public synchronized JWKSet jwks() {
        return new JWKSet(new ArrayList<JWK>(keys.values()));
    }

    /** The URL the keys are refreshed from, or null when they are pinned. */
    public URI url() {
        return url;
    }

    /** Fetches the set from the URL now and holds it instead. */
    public synchronized void refresh() {
        if (url == null) {
            throw new IllegalStateException("these broker keys have no URL to refresh from");
        }
        refreshed = clock.instant();
        keys = signingKeys(fetch.apply(url));
    }

    /**
     * The key named {@code kid}, or null; an unknown kid is looked for again at the URL if the
     * last look was at least the refresh interval ago.
     *
     * @throws BrokerKeysUnavailableException when that look fails
     */
    public synchronized ECKey get(String kid) {
        ECKey key = keys.get(kid);
        if (key == null && url != null) {
            Instant now = clock.instant();
            if (refreshed == null || !now.isBefore(refreshed.plus(refreshInterval))) {
                try {
                    refresh();
                } catch (RuntimeException e) {
                    throw new BrokerKeysUnavailableException("signed with key '" + kid
                            + "', not among the broker keys held; fetching them again from " + url
                            + " failed: " + e.getMessage(), e);
                }
                key = keys.get(kid);
            }
        }
        return key;
    }

    static String thumbprint(ECKey key) {
        try {
            return key.computeThumbprint().toString();
        } catch (JOSEException e) {
            throw new IllegalStateException(e);
        }
    }

    /** The broker's public signing keys of a JWK set, by kid: EC P-256 public keys only. */
    static Map<String, ECKey> signingKeys(byte[] jwksJson) {
        JsonNode jwks;
        try {
            jwks = Json.parse(jwksJson);
        } catch (RuntimeException e) {
            throw new IllegalArgumentException("the broker keys are not JSON");
        }
        JsonNode members = jwks == null ? null : jwks.get("keys");
        if (members == null || !members.isArray() || members.isEmpty()) {
            throw new IllegalArgumentException("a JWK set is a JSON object whose keys member is a non-empty array");
        }
        Map<String, ECKey> found = new LinkedHashMap<>();
        for (JsonNode jwk : members) {
            if (!jwk.isObject()) {
                throw new IllegalArgumentException("each member of keys must be a JSON object");
            }
            JsonNode kidNode = jwk.get("kid");
            if (kidNode == null || !kidNode.isTextual() || !KID.matcher(kidNode.asText()).matches()) {
                throw new IllegalArgumentException(
                        "each key needs a kid of 1 to 64 characters of A-Z a-z 0-9 . _ : -");
            }
            String kid = kidNode.asText();
            if (jwk.has("d")) {
                throw new IllegalArgumentException("key '" + kid + "' holds a private key (member d)");
            }
            if (!"EC".equals(jwk.path("kty").asText()) || !"P-256".equals(jwk.path("crv").asText())) {
                throw new IllegalArgumentException("key '" + kid + "' is not an EC P-256 key (ES256)");
            }
            try {
                ECKey key = ECKey.parse(Json.MAPPER.writeValueAsString(jwk));
                if (!Curve.P_256.equals(key.getCurve())) {
                    throw new IllegalArgumentException("key '" + kid + "' is not on P-256");
                }
                found.put(kid, new ECKey.Builder(key.getCurve(), key.toECPublicKey()).keyID(kid).build());
            } catch (ParseException | JOSEException | IOException e) {
                throw new IllegalArgumentException("key '" + kid + "' is not a valid EC P-256 public key: "
                        + e.getMessage(), e);
            }
        }
        return found;
    }

    /** GET over {@code http}, no redirects, at most 64 KiB, 200 only. */
    static byte[] fetchWith(HttpClient http, URI url, Duration timeout) {
        HttpRequest request = HttpRequest.newBuilder(url).timeout(timeout).header("Accept", "application/json")
                .GET().build();
        try {
            HttpResponse<InputStream> response = http.send(request, HttpResponse.BodyHandlers.ofInputStream());
            try (InputStream in = response.body()) {
                byte[] body = in.readNBytes(MAX_JWKS_BYTES + 1);
                if (response.statusCode() != 200) {
                    throw new UncheckedIOException(new IOException(url + " answered HTTP " + response.statusCode()));
                }
                if (body.length > MAX_JWKS_BYTES) {
                    throw new UncheckedIOException(new IOException(url + " answered more than "
                            + MAX_JWKS_BYTES + " bytes"));
                }
                return body;
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new UncheckedIOException(new IOException("interrupted", e));
        }
    }

    /** How to get and follow the broker's keys. */
    public static final class Builder {
        private byte[] initial;
        private String initialSource;
        private URI url;
        private boolean allowHttp;
        private Duration refreshInterval = Duration.ofMinutes(5);
        private HttpClient http;
        private Function<URI, byte[]> fetch;
        private Clock clock = Clock.systemUTC();
        private Set<String> thumbprints;

        private Builder() {}

        /** Start from this JWK set (JSON text) instead of fetching it. */
        public Builder jwks(String jwksJson) {
            this.initial = jwksJson.getBytes(java.nio.charset.StandardCharsets.UTF_8);
            this.initialSource = "the JWK set given";
            return this;
        }

        /** Start from the JWK set saved in this file. */
        public Builder file(Path path) {
            try {
                this.initial = Files.readAllBytes(path);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            this.initialSource = path.toString();
            return this;
        }

        /**
         * Refresh from this URL on an unknown kid (and fetch from it at {@link #build()} when no
         * set was given): the broker's {@code /.well-known/delivery-signing-keys.json}.
         */
        public Builder url(URI url) {
            this.url = url;
            return this;
        }

        /** Accept a plain-http URL: local development only. */
        public Builder allowHttp(boolean allow) {
            this.allowHttp = allow;
            return this;
        }

        public Builder refreshInterval(Duration interval) {
            this.refreshInterval = Objects.requireNonNull(interval);
            return this;
        }

        /** The HTTP client to fetch with (its TLS settings decide which certificates are trusted). */
        public Builder httpClient(HttpClient http) {
            this.http = http;
            return this;
        }

        /** Replace the fetching altogether (tests, or your own transport). */
        public Builder fetcher(Function<URI, byte[]> fetch) {
            this.fetch = fetch;
            return this;
        }

        public Builder clock(Clock clock) {
            this.clock = Objects.requireNonNull(clock);
            return this;
        }

        /** Refuse to load unless every key has one of these RFC 7638 thumbprints. */
        public Builder pinnedThumbprints(Collection<String> thumbprints) {
            this.thumbprints = thumbprints == null ? null : new TreeSet<>(thumbprints);
            return this;
        }

        public BrokerKeys build() {
            if (url != null) {
                String scheme = url.getScheme();
                if (!"https".equalsIgnoreCase(scheme) && !("http".equalsIgnoreCase(scheme) && allowHttp)) {
                    throw new IllegalArgumentException(
                            "the broker keys URL must be https (http only with allowHttp): " + url);
                }
            }
            if (initial == null && url == null) {
                throw new IllegalStateException("give the broker keys (jwks or file) or a URL");
            }
            Function<URI, byte[]> fetcher = fetch;
            if (fetcher == null) {
                HttpClient client = http != null ? http : org.isabroker.client.HttpClients.defaultClient();
                fetcher = u -> fetchWith(client, u, Duration.ofSeconds(10));
            }
            Map<String, ECKey> keys;
            Instant refreshed = null;
            String source = initialSource;
            if (initial != null) {
                keys = signingKeys(initial);
            } else {
                keys = signingKeys(fetcher.apply(url));
                refreshed = clock.instant();
                source = url.toString();
            }
            if (thumbprints != null) {
                List<String> unknown = new ArrayList<>();
                keys.forEach((kid, key) -> {
                    if (!thumbprints.contains(thumbprint(key))) {
                        unknown.add(kid);
                    }
                });
                if (!unknown.isEmpty()) {
                    throw new IllegalArgumentException(source + ": keys " + unknown
                            + " have none of the thumbprints given");
                }
            }
            return new BrokerKeys(keys, url, refreshInterval, fetcher, clock, refreshed);
        }
    }
}
