"""A three-node Apache Kafka cluster (KRaft, SASL_SSL, SCRAM-SHA-512, ACLs) for tests."""
