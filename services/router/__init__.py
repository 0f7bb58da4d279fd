"""The router: consumes accepted messages from Kafka, re-checks each against the agreements in
force at delivery time, and delivers one minimised projection per recipient."""
