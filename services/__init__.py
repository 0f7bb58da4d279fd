"""isa-broker: agencies publish criminal-justice events once; each is checked against the
Information Sharing Agreements (ISAs) and every entitled partner receives exactly its part.

Packages:

- ``services.core``    shared by both services: ISA engine, message types, store, Kafka wiring,
                        keys and secrets, webhook signing, settings.
- ``services.gateway`` the FastAPI application: OAuth 2.0 token endpoint, message intake,
                        subscriptions, and the outbox relay that feeds Kafka.
- ``services.router``  the Kafka consumer: per-recipient projection and webhook delivery.
"""
