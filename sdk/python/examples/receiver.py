"""The smallest correct receiver of release alerts from isa-broker, for a council or VAWG
service: an ASGI app (Starlette, run by uvicorn) that, for each webhook request,

1. verifies the Standard Webhooks signature over the raw body and its timestamp, with every
   key the subscription has while a rotation runs (answers ``401`` otherwise);
2. de-duplicates on ``webhook-id``, the delivery id, in its own SQLite database: the broker
   delivers at least once, and a retried or replayed delivery carries the same id;
3. opens an encrypted body (``"encrypt": true`` subscriptions): decrypts it with your private
   key and checks that the broker signed it for you, for this delivery;
4. stores the event and the duties it carries in one transaction, and answers ``204`` at
   once (the broker waits 10 s at most);
5. afterwards, acknowledges each duty (``isadutyid``) with the broker, retrying until the
   broker has it.

Step 5 acknowledges as soon as the alert is in your database. Where an agreement expects an
action (the VAWG alert's ``victim_contacted``...), acknowledge when your staff have acted,
with its code: replace :meth:`Receiver.acknowledge_duties` by a call from your case system.

Run it (synthetic data only on a test broker; keep the secrets in a vault or 0600 files)::

    pip install isa-broker-client starlette uvicorn
    export ISA_GATEWAY_URL=https://isa-broker.example ISA_PARTY=eastborough-vawg
    export ISA_CLIENT_ID=... ISA_CLIENT_SECRET=...          # scopes duties:ack, ...
    export ISA_WEBHOOK_KEYS=whsec_...                       # comma separated during rotation
    export ISA_PRIVATE_KEYS=keys/vawg-2026-12.private.jwk.json   # for encrypted bodies
    python receiver.py --port 8080 --db receiver.sqlite3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from isa_broker_client import (
    BrokerClient,
    ClientSecret,
    DeliveryDecryptError,
    DutyCleared,
    IsaBrokerClientError,
    NotFound,
    Recipient,
    WebhookVerificationError,
    WebhookVerifier,
    duty_ids,
)

log = logging.getLogger("isa.receiver")

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    webhook_id  TEXT PRIMARY KEY,         -- the delivery id: one row per delivery, ever
    message_id  TEXT NOT NULL,            -- the CloudEvent id: the same through every channel
    event       TEXT NOT NULL,            -- the CloudEvent, data = your projection
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS duties (
    duty_id     TEXT PRIMARY KEY,
    message_id  TEXT NOT NULL,
    due_at      TEXT,
    state       TEXT NOT NULL DEFAULT 'open'   -- open | acknowledged | cleared | unknown
);
"""


class Store:
    """The receiver's database: deliveries by ``webhook-id``, and the duties to acknowledge.
    Each call opens its own connection, so it can run in a worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with self._connect() as db:
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, isolation_level=None, timeout=30)

    def seen(self, webhook_id: str) -> bool:
        with contextlib.closing(self._connect()) as db:
            row = db.execute("SELECT 1 FROM deliveries WHERE webhook_id = ?", (webhook_id,))
            return row.fetchone() is not None

    def add(self, webhook_id: str, event: dict[str, Any]) -> bool:
        """Store a delivery and its duties at once; ``False`` if the delivery was stored
        before (a concurrent duplicate)."""
        with contextlib.closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                added = db.execute(
                    "INSERT OR IGNORE INTO deliveries VALUES (?, ?, ?, ?)",
                    (webhook_id, event.get("id", ""), json.dumps(event), time.time()),
                ).rowcount
                for duty_id in duty_ids(event) if added else ():
                    db.execute(
                        "INSERT OR IGNORE INTO duties (duty_id, message_id, due_at) "
                        "VALUES (?, ?, ?)",
                        (duty_id, event.get("id", ""), event.get("isadutydue")),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return bool(added)

    def open_duties(self) -> list[str]:
        with contextlib.closing(self._connect()) as db:
            rows = db.execute("SELECT duty_id FROM duties WHERE state = 'open' ORDER BY due_at")
            return [r[0] for r in rows]

    def settle(self, duty_id: str, state: str) -> None:
        with contextlib.closing(self._connect()) as db:
            db.execute("UPDATE duties SET state = ? WHERE duty_id = ?", (state, duty_id))

    def event(self, webhook_id: str) -> dict[str, Any] | None:
        with contextlib.closing(self._connect()) as db:
            row = db.execute(
                "SELECT event FROM deliveries WHERE webhook_id = ?", (webhook_id,)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def duty_state(self, duty_id: str) -> str | None:
        with contextlib.closing(self._connect()) as db:
            row = db.execute("SELECT state FROM duties WHERE duty_id = ?", (duty_id,)).fetchone()
        return row[0] if row else None


@dataclass
class Receiver:
    """What the app needs: the party it receives for, the subscription's verifying keys,
    your private encryption keys (for encrypted bodies), a client of your party for the
    duties and the broker's keys, and the store."""

    party: str
    webhook_keys: Sequence[str]
    private_keys: Sequence[dict[str, Any]]
    client: BrokerClient
    store: Store
    clock: Callable[[], float] = time.time
    retry_seconds: float = 30.0
    _recipient: Recipient | None = field(default=None, init=False)
    _wake: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    def __post_init__(self) -> None:
        self.verifier = WebhookVerifier(self.webhook_keys, clock=self.clock)

    async def recipient(self) -> Recipient:
        """Fetched on the first encrypted body: the broker's delivery-signing keys (pin them
        with ``client.broker_keys(thumbprints=...)`` in production)."""
        if self._recipient is None:
            broker_keys = await self.client.broker_keys()
            self._recipient = Recipient(self.party, self.private_keys, broker_keys)
        return self._recipient

    async def receive(self, request: Request) -> Response:
        body = await request.body()  # the raw bytes: the signature covers exactly these
        try:
            verified = self.verifier.verify(body, request.headers)
        except WebhookVerificationError as e:
            log.warning("refused a webhook request: %s", e)
            return Response(status_code=401)
        webhook_id = verified.webhook_id
        if await asyncio.to_thread(self.store.seen, webhook_id):
            return Response(status_code=204)  # a retry or replay: already stored
        try:
            if verified.encrypted:
                opened = await (await self.recipient()).aopen_webhook(body, webhook_id)
                event = opened.event
            else:
                event = verified.event()
        except (DeliveryDecryptError, ValueError) as e:
            # never log the content; a non-2xx answer makes the broker retry, then
            # dead-letter it: fix the keys and replay (POST /v1/dead-letters/{id}/replay)
            log.error("delivery %s not opened: %s", webhook_id, type(e).__name__)
            return Response(status_code=500)
        if await asyncio.to_thread(self.store.add, webhook_id, event):
            log.info("stored delivery %s of message %s", webhook_id, event.get("id"))
            self._wake.set()
        return Response(status_code=204)

    async def acknowledge_duties(self) -> None:
        """Acknowledge every open duty once; those the broker did not take stay open."""
        for duty_id in await asyncio.to_thread(self.store.open_duties):
            try:
                await self.client.acknowledge_duty(duty_id)
            except DutyCleared:  # the notice was cancelled: nothing to acknowledge
                state = "cleared"
            except NotFound:
                state = "unknown"
            except IsaBrokerClientError as e:
                log.warning("duty %s not acknowledged yet: %s", duty_id, type(e).__name__)
                continue
            else:
                state = "acknowledged"
            await asyncio.to_thread(self.store.settle, duty_id, state)
            log.info("duty %s %s", duty_id, state)

    async def acknowledge_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.retry_seconds)
            self._wake.clear()
            await self.acknowledge_duties()

    def app(self) -> Starlette:
        @contextlib.asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            worker = asyncio.create_task(self.acknowledge_forever())
            try:
                yield
            finally:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
                await self.client.aclose()

        return Starlette(routes=[Route("/", self.receive, methods=["POST"])], lifespan=lifespan)


def from_environment(db: Path) -> Receiver:
    """The receiver configured as the module docstring shows."""
    env = os.environ
    private_paths = [p for p in env.get("ISA_PRIVATE_KEYS", "").split(",") if p]
    return Receiver(
        party=env["ISA_PARTY"],
        webhook_keys=[k.strip() for k in env["ISA_WEBHOOK_KEYS"].split(",") if k.strip()],
        private_keys=[json.loads(Path(p).read_text()) for p in private_paths],
        client=BrokerClient(
            env["ISA_GATEWAY_URL"],
            ClientSecret(env["ISA_CLIENT_ID"], env["ISA_CLIENT_SECRET"]),
        ),
        store=Store(db),
    )


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Receive release alerts from isa-broker")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--db", type=Path, default=Path("receiver.sqlite3"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    uvicorn.run(from_environment(args.db).app(), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
