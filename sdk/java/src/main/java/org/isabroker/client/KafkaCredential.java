package org.isabroker.client;

/**
 * Your party's Kafka user: log in with SASL {@code mechanism} (SCRAM-SHA-512), read
 * {@code topic}, in consumer groups named {@code groupPrefix + "anything"}. The password is
 * shown once.
 */
public record KafkaCredential(String username, String password, String mechanism, String topic, String groupPrefix) {
    @Override
    public String toString() {
        return "KafkaCredential{username=" + username + ", topic=" + topic + ", password=<hidden>}";
    }
}
