"""Webhook signing keys sealed at rest (services.core.crypto.at_rest): the ``subscriptions``
table, a dump or a backup holds no key that signs webhooks; keys stored in clear before
sealing existed are sealed at the next start; retiring a key-encryption key first seals
again what depended on it; a sealed key moved to another subscription does not open."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.core.crypto.at_rest import kek_of
from services.core.crypto.envelope import EnvelopeError
from services.core.runtime import Runtime
from services.core.store import tables as t
from services.core.webhooks import signing
from tests.conftest import make_settings
from tests.security.helpers import VAWG, bearer, gateway, token_of

pytestmark = pytest.mark.integration


async def _stored(rt: Runtime, sub_id: str) -> tuple[str | None, str | None]:
    async with rt.store.engine.connect() as c:
        row = (
            await c.execute(
                sa.select(t.subscriptions.c.secret, t.subscriptions.c.previous_secret).where(
                    t.subscriptions.c.id == sub_id
                )
            )
        ).one()
    return row[0], row[1]


async def test_keys_are_stored_sealed_and_rotation_keeps_both_sealed(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path, database_url=database_url)
    rt = await Runtime.create(settings, "127.0.0.1:9", embedded=False)  # Kafka unused
    try:
        async with gateway(rt) as (_, http):
            token, _ = await token_of(http, rt, VAWG)
            body = {"message_types": ["release-notice"], "webhook": {"url": "http://127.0.0.1:9/h"}}
            r = await http.post("/v1/subscriptions", json=body, headers=bearer(token))
            assert r.status_code == 201, r.text
            sub_id, shown = r.json()["id"], r.json()["secret"]
            secret, _ = await _stored(rt, sub_id)
            assert secret is not None and secret.startswith("env1:") and shown not in secret
            assert rt.signing_keys_at_rest.open_(sub_id, secret) == shown
            r = await http.post(
                f"/v1/subscriptions/{sub_id}/rotate-secret", json={}, headers=bearer(token)
            )
            assert r.status_code == 200, r.text
            new = r.json()["secret"]
            secret, previous = await _stored(rt, sub_id)
            assert secret is not None and previous is not None
            assert new not in secret and shown not in previous
            assert rt.signing_keys_at_rest.open_(sub_id, secret) == new
            assert rt.signing_keys_at_rest.open_(sub_id, previous) == shown
            # the same sealed value under another subscription's id does not open
            with pytest.raises(EnvelopeError):
                rt.signing_keys_at_rest.open_(str(uuid.uuid4()), secret)
    finally:
        await rt.aclose()


def test_clear_keys_are_sealed_at_start_and_again_before_a_kek_is_retired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Synchronous: the command line runs its own event loop."""
    from services.cli import main

    settings = make_settings(tmp_path)
    monkeypatch.setenv("ISA_BROKER_DATA_DIR", str(settings.data_dir))
    clear = signing.new_signing_key("v1a")
    sub_id = str(uuid.uuid4())

    async def store_in_clear() -> None:  # as stored before sealing existed
        rt = await Runtime.create(settings, "127.0.0.1:9", embedded=False)
        try:
            await rt.store.add_subscription(
                {
                    "id": sub_id,
                    "party": VAWG,
                    "message_types": ["release-notice"],
                    "channel": "webhook",
                    "url": "http://127.0.0.1:9/h",
                    "secret": clear,
                    "signature_scheme": "v1a",
                    "created_at": rt.clock(),
                    "status": "active",
                }
            )
        finally:
            await rt.aclose()

    async def stored_then_opened() -> tuple[str, str | None]:
        rt = await Runtime.create(settings, "127.0.0.1:9", embedded=False)  # a process starts
        try:
            secret, _ = await _stored(rt, sub_id)
            assert secret is not None
            return secret, rt.signing_keys_at_rest.open_(sub_id, secret)
        finally:
            await rt.aclose()

    asyncio.run(store_in_clear())
    secret, opened = asyncio.run(stored_then_opened())
    assert secret.startswith("env1:") and clear not in secret and opened == clear
    old_kek = kek_of(secret)
    assert main(["keys", "rotate-kek"]) == 0
    new_kek = capsys.readouterr().out.split()[-1]
    assert main(["keys", "retire-kek", str(old_kek)]) == 0
    assert "sealed 1 webhook signing key(s) again" in capsys.readouterr().out
    secret, opened = asyncio.run(stored_then_opened())
    assert kek_of(secret) == new_kek and opened == clear
