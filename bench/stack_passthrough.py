"""Baseline (a) of the production-stack benchmark: the least a gateway can do, as a process of
its own.

    python bench/stack_passthrough.py --port P   (Kafka and its security from the environment)

A FastAPI app whose ``POST /v1/messages/{message_type}`` parses the JSON body, awaits
aiokafka's ``send_and_wait`` of it (keyed by the person's prison number) to a topic of its
own, and answers 202 with a fresh id. No token check, schema, decision, store or audit.

Served as ``isa-broker gateway`` serves the gateway (``services.system.System._serve_http``):
one uvicorn server in one process, the same ``uvicorn.Config`` arguments, run with
``Server.serve()`` on the standard asyncio loop. The producer is the product's own
(``KafkaProfile.producer_kwargs()``: ``acks=all``, ``linger_ms`` 5, the idempotent producer on
Apache Kafka) with the connection and security settings the gateway reads from the same
environment (``KAFKA_BOOTSTRAP_SERVERS``, ``ISA_BROKER_KAFKA_*``). Its topic has the
partitions, replication factor and ``min.insync.replicas`` the product's topics get.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import uvicorn
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from fastapi import Body, FastAPI

from services.cli.common import load_settings
from services.core.kafka.config import KafkaProfile, KafkaSecurity
from services.core.settings import Settings


def profile_of(settings: Settings) -> KafkaProfile:
    """The Kafka profile ``Runtime.create`` builds from the same settings."""
    assert settings.kafka.bootstrap_servers, "KAFKA_BOOTSTRAP_SERVERS is required"
    return KafkaProfile(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        embedded=settings.kafka.compat == "tansu",
        topic_prefix=settings.kafka.topic_prefix,
        partitions=settings.kafka.partitions,
        replication_factor=settings.kafka.replication_factor,
        min_insync_replicas=settings.kafka.min_insync_replicas,
        security=KafkaSecurity.from_settings(settings),
    )


async def ensure_topic(profile: KafkaProfile, topic: str) -> None:
    admin = AIOKafkaAdminClient(**profile.client_kwargs())
    await admin.start()
    try:
        configs = {}
        if not profile.embedded:
            configs["min.insync.replicas"] = str(profile.min_insync_replicas)
        new = NewTopic(topic, profile.partitions, profile.replication_factor, topic_configs=configs)
        with suppress(TopicAlreadyExistsError):
            await admin.create_topics([new])
    finally:
        await admin.close()


def create_app(profile: KafkaProfile, topic: str) -> FastAPI:
    producer = AIOKafkaProducer(**profile.producer_kwargs())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await producer.start()
        try:
            yield
        finally:
            await producer.stop()

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/messages/{message_type}", status_code=202)
    async def accept(message_type: str, payload: dict[str, Any] = Body(...)) -> dict[str, str]:  # noqa: B008
        person = payload.get("person") or {}
        key = str(person.get("prison_number", "")).encode() if isinstance(person, dict) else b""
        await producer.send_and_wait(topic, json.dumps(payload).encode(), key=key or None)
        return {"id": str(uuid.uuid4()), "message_type": message_type}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


async def main(port: int) -> None:
    settings = load_settings()
    profile = profile_of(settings)
    topic = f"{profile.topic_prefix}.passthrough.v1"
    await ensure_topic(profile, topic)
    config = uvicorn.Config(
        create_app(profile, topic),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        access_log=False,
    )
    print(f"pass-through app on 127.0.0.1:{port}, topic {topic}", flush=True)
    await uvicorn.Server(config).serve()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    asyncio.run(main(ap.parse_args().port))
