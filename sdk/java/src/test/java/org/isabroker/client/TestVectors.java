package org.isabroker.client;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;

/** The shared test vectors: {@code $ISA_TEST_VECTORS}, else {@code ../test-vectors}. */
final class TestVectors {
    private TestVectors() {}

    static Path dir() {
        String env = System.getenv("ISA_TEST_VECTORS");
        if (env != null && !env.isBlank()) {
            return Path.of(env);
        }
        String base = System.getProperty("isa.sdk.basedir", System.getProperty("user.dir"));
        return Path.of(base).resolve("../test-vectors").normalize();
    }

    /** A vector file; a missing one fails the test (the vectors are part of the suite). */
    static JsonNode load(String name) throws Exception {
        Path file = dir().resolve(name);
        if (!Files.isRegularFile(file)) {
            throw new AssertionError("test vector file missing: " + file
                    + " (set ISA_TEST_VECTORS to the directory of webhooks.json, records.json, problems.json)");
        }
        JsonNode json = Json.MAPPER.readTree(file.toFile());
        if (json.path("version").asInt() != 1 || !json.path("cases").isArray() || json.path("cases").isEmpty()) {
            throw new AssertionError(file + ": expected version 1 with a non-empty cases array");
        }
        return json;
    }
}
