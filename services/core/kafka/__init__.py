"""Kafka wiring shared by gateway and router: client settings, topics, the embedded broker,
and CloudEvents binary-mode records. No aiokafka exception escapes this package."""
