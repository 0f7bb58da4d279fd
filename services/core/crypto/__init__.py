"""Key material generated at first run into the data directory, never committed:
the gateway's token-signing keys, the pseudonymisation key, and secret helpers."""
