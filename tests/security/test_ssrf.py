"""Server-side request forgery through webhook URLs (OWASP API7:2023): a subscriber pointing
the broker at loopback, private networks, link-local cloud metadata, or a host that does not
resolve is refused when it subscribes (422 naming the reason), and - whatever is stored, e.g.
a host whose DNS answer changes later - the router never connects to such an address."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest

from services.core.runtime import Runtime
from services.core.settings import Settings
from services.core.webhooks import signing
from tests.conftest import EXTERNAL_KAFKA, make_settings
from tests.factories import release_notice
from tests.security.helpers import (
    PRISON,
    VAWG,
    bearer,
    gateway,
    problem_text,
    route_and_settle,
    token_of,
)

pytestmark = pytest.mark.integration

#: what each URL must be refused for: any of the words may name the reason
REFUSED: dict[str, tuple[str, ...]] = {
    "http://127.0.0.1/hooks": ("loopback",),
    "https://127.0.0.1/hooks": ("loopback",),
    "http://127.1.2.3:8080/hooks": ("loopback",),
    "http://[::1]/hooks": ("loopback",),
    "http://localhost/hooks": ("loopback",),
    "http://localhost:8000/v1/admin/clients": ("loopback",),
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/": ("metadata",),
    "http://169.254.1.1/": ("link-local",),
    "http://[fe80::1]/": ("link-local",),
    "http://10.0.0.1/hooks": ("private",),
    "http://192.168.1.1/hooks": ("private",),
    "http://172.16.0.1/hooks": ("private",),
    "http://172.31.255.254/hooks": ("private",),
    "http://[fd12:3456::1]/hooks": ("private",),
    "http://100.64.0.1/hooks": ("shared address space", "cgnat"),
    "http://[::ffff:127.0.0.1]/hooks": ("loopback",),
    "http://[::ffff:169.254.169.254]/": ("metadata",),
    "http://[64:ff9b::a9fe:a9fe]/": ("metadata",),  # NAT64 of 169.254.169.254
    "http://0.0.0.0/hooks": ("unspecified",),
    "http://[::]/hooks": ("unspecified",),
    "http://2130706433/hooks": ("host", "address", "loopback"),  # 127.0.0.1 as one number
    "http://0x7f.0.0.1/hooks": ("host", "address", "loopback"),
    "http://user:pass@example.com/hooks": ("credentials",),
    "http://no-such-host.invalid/hooks": ("does not resolve", "resolve"),
}


@pytest.fixture
async def strict(tmp_path: Path, kafka_bootstrap: str) -> AsyncIterator[tuple[Runtime, Any]]:
    """A gateway whose webhooks may reach public addresses only (the production default;
    the shared test settings allow-list loopback for their local receivers)."""
    async with _gateway(tmp_path, kafka_bootstrap, webhook_allowed_networks=()) as pair:
        yield pair


@contextlib.asynccontextmanager
async def _gateway(
    tmp_path: Path, kafka_bootstrap: str, **overrides: Any
) -> AsyncIterator[tuple[Runtime, Any]]:
    settings = make_settings(tmp_path, **overrides)
    rt = await Runtime.create(settings, kafka_bootstrap, embedded=not EXTERNAL_KAFKA)
    try:
        async with gateway(rt) as (_, http):
            yield rt, http
    finally:
        await rt.aclose()


def _hook(url: str) -> dict[str, Any]:
    return {"message_types": ["release-notice"], "webhook": {"url": url}}


async def test_internal_and_unresolvable_webhook_urls_are_refused_naming_why(
    strict: tuple[Runtime, httpx.AsyncClient],
) -> None:
    rt, http = strict
    token, _ = await token_of(http, rt, VAWG)
    failures = []
    for url, reasons in REFUSED.items():
        r = await http.post("/v1/subscriptions", json=_hook(url), headers=bearer(token))
        body = r.json()
        text = problem_text(body).lower()
        if r.status_code != 422 or body.get("code") not in (
            "webhook_url_refused",
            "validation_failed",
        ):
            failures.append((url, r.status_code, body.get("code"), problem_text(body)[:160]))
        elif not any(reason in text for reason in reasons):
            failures.append((url, "reason not named", reasons, problem_text(body)[:160]))
    assert not failures, "\n".join(map(str, failures))
    assert await rt.store.list_subscriptions(VAWG) == []


async def test_a_public_address_is_accepted(strict: tuple[Runtime, httpx.AsyncClient]) -> None:
    """Control: the same gateway accepts a public address (an IP literal: no DNS needed)."""
    rt, http = strict
    token, _ = await token_of(http, rt, VAWG)
    r = await http.post(
        "/v1/subscriptions", json=_hook("https://93.184.215.14/hooks"), headers=bearer(token)
    )
    assert r.status_code == 201, r.text


async def test_an_allow_listed_network_is_reachable_but_metadata_never(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with _gateway(tmp_path, kafka_bootstrap, webhook_allowed_networks=("10.0.0.0/8",)) as (
        rt,
        http,
    ):
        token, _ = await token_of(http, rt, VAWG)
        r = await http.post(
            "/v1/subscriptions", json=_hook("http://10.1.2.3/hooks"), headers=bearer(token)
        )
        assert r.status_code == 201, r.text
        for url, reason in [
            ("http://169.254.169.254/latest/meta-data/", "metadata"),
            ("http://127.0.0.1/hooks", "loopback"),
            ("http://192.168.1.1/hooks", "private"),
        ]:
            r = await http.post("/v1/subscriptions", json=_hook(url), headers=bearer(token))
            assert r.status_code == 422, (url, r.text)
            assert reason in problem_text(r.json()).lower(), (url, r.text)


async def test_plain_http_is_refused_when_http_is_not_allowed(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with _gateway(
        tmp_path, kafka_bootstrap, webhook_allowed_networks=(), webhook_allow_http=False
    ) as (rt, http):
        token, _ = await token_of(http, rt, VAWG)
        r = await http.post(
            "/v1/subscriptions", json=_hook("http://93.184.215.14/hooks"), headers=bearer(token)
        )
        assert r.status_code in (400, 422), r.text
        assert "https" in problem_text(r.json())
        assert await rt.store.list_subscriptions(VAWG) == []


def test_production_settings_refuse_plain_http_and_internal_allow_lists(tmp_path: Path) -> None:
    production: dict[str, Any] = {
        "mode": "production",
        "data_dir": tmp_path,
        "public_url": "https://broker.example",
        "database_url": "postgresql+asyncpg://db.example/isa?sslmode=verify-full",
        "kafka_bootstrap_servers": "kafka.example:9093",
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "isa-broker",
        "kafka_sasl_password": "synthetic-password",
    }
    Settings(**{**production, "webhook_allow_http": False})  # control: a valid configuration
    with pytest.raises(pydantic.ValidationError, match="WEBHOOK_ALLOW_HTTP"):
        Settings(**{**production, "webhook_allow_http": True})
    for network in ("127.0.0.0/8", "169.254.0.0/16", "::1/128", "0.0.0.0/0"):
        with pytest.raises(pydantic.ValidationError, match="loopback, link-local"):
            Settings(
                **{**production, "webhook_allow_http": False},
                webhook_allowed_networks=(network,),
            )


# -- at delivery time -------------------------------------------------------------------------


class Listener:
    """A TCP listener on loopback that counts connections (it must get none)."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Listener:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
            writer.close()

        self._server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


async def test_a_stored_internal_url_is_never_connected_to(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    """A subscription row with a loopback URL - stored before the policy changed, or a host
    name whose DNS answer became 127.0.0.1 after it was checked (rebinding) - gets a refused
    attempt and no connection, end to end through the router's dispatcher."""
    async with (
        _gateway(
            tmp_path,
            kafka_bootstrap,
            webhook_allowed_networks=(),
            dispatch_poll_seconds=0.05,
            webhook_retry_schedule=(0, 0.05),
        ) as (rt, http),
        Listener() as listener,
    ):
        # rows the API would refuse, as stored before the policy changed or as a
        # rebinding host looks once its DNS answer moves: a literal, and a name
        ids = [
            await _store_webhook(rt, f"http://127.0.0.1:{listener.port}/hooks"),
            await _store_webhook(rt, f"http://localhost:{listener.port}/hooks"),
        ]
        sender, _ = await token_of(http, rt, PRISON)
        r = await http.post(
            "/v1/messages/release-notice", json=release_notice(), headers=bearer(sender)
        )
        assert r.status_code == 202, r.text
        await route_and_settle(rt, r.json()["id"])

        rows = [
            d
            for d in await rt.store.list_deliveries(message_id=r.json()["id"])
            if d["subscription_id"] in ids
        ]
        assert len(rows) == 2
        for row in rows:
            assert row["status"] == "dead_lettered", row
            history = await rt.store.attempts(row["id"])
            assert history and all("address refused: loopback" in a["error"] for a in history)
        assert listener.connections == 0


async def _store_webhook(rt: Runtime, url: str) -> str:
    """A VAWG webhook subscription to ``url`` written straight to the store."""
    sub_id = str(uuid.uuid4())
    await rt.store.add_subscription(
        {
            "id": sub_id,
            "party": VAWG,
            "message_types": ["release-notice"],
            "channel": "webhook",
            "url": url,
            "secret": signing.new_signing_key("v1"),
            "signature_scheme": "v1",
            "created_at": rt.clock(),
            "status": "active",
        }
    )
    return sub_id
