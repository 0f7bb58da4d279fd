"""The broker's delivery-signing keys (pinning, fetching, refreshing on an unknown kid) and
your own encryption keys, with the sealed deliveries of the shared vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from vectors import load_vectors

from isa_broker_client import (
    BrokerKeys,
    BrokerKeysUnavailable,
    NotSignedByBroker,
    Recipient,
    generate_key,
    thumbprint,
)
from isa_broker_client.broker_keys import BROKER_KEYS_PATH
from isa_broker_client.crypto import key_set

RECORDS = load_vectors("records.json")
URL = "https://isa-broker.test" + BROKER_KEYS_PATH
BROKER_JWKS: dict[str, Any] = RECORDS["broker_delivery_signing_jwks"]
OTHER_JWKS = {"keys": [{**generate_key("other")[1], "use": "sig", "alg": "ES256"}]}


def case(name: str) -> dict[str, Any]:
    return next(c for c in RECORDS["cases"] if c["name"] == name)


def record(name: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    found = case(name)
    headers = [
        ("isa_message_id", found["context"]["message_id"].encode()),
        ("isa_delivery_id", found["context"]["delivery_id"].encode()),
    ]
    return found["token"].encode(), headers


class KeyServer:
    """The broker's /.well-known/delivery-signing-keys.json, counting fetches."""

    def __init__(self, jwks: dict[str, Any] | None) -> None:
        self.jwks = jwks
        self.fetches = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert str(request.url) == URL
        self.fetches += 1
        if self.jwks is None:
            return httpx.Response(503)
        return httpx.Response(200, json=self.jwks)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def recipient(keys: BrokerKeys) -> Recipient:
    return Recipient(RECORDS["recipient"], RECORDS["recipient_private_jwks"]["keys"], keys)


async def test_an_unknown_kid_fetches_the_keys_again_once() -> None:
    server, clock = KeyServer(BROKER_JWKS), Clock()
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        # pinned long ago: the broker has rotated since
        keys = BrokerKeys(OTHER_JWKS, url=URL, http=http, clock=clock)
        opened = await recipient(keys).aopen_record(*record("record-valid"))
        assert opened.event == case("record-valid")["event"]
        assert server.fetches == 1
        await recipient(keys).aopen_record(*record("record-previous-key"))
        assert server.fetches == 1  # known now
        # a key the broker does not publish: not looked for within refresh_seconds of the
        # last fetch, then once per period
        with pytest.raises(NotSignedByBroker):
            await recipient(keys).aopen_record(*record("unknown-signing-key"))
        assert server.fetches == 1
        clock.now += 300
        for _ in range(2):
            with pytest.raises(NotSignedByBroker):
                await recipient(keys).aopen_record(*record("unknown-signing-key"))
        assert server.fetches == 2
    assert "other" not in keys.thumbprints()  # the set fetched replaced the pinned one


async def test_a_failed_fetch_is_broker_keys_unavailable() -> None:
    server = KeyServer(None)
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        keys = BrokerKeys(OTHER_JWKS, url=URL, http=http)
        with pytest.raises(BrokerKeysUnavailable) as raised:
            await recipient(keys).aopen_record(*record("record-valid"))
    assert raised.value.kind == "broker_keys_unavailable"


def test_the_sync_twin_fetches_too() -> None:
    server = KeyServer(BROKER_JWKS)
    with httpx.Client(transport=httpx.MockTransport(server)) as http:
        keys = BrokerKeys.fetch(URL, sync_http=http)
        assert server.fetches == 1
        token, headers = record("record-valid")
        assert recipient(keys).open_record(token, headers).kid == "eastborough-vawg-2026-01"


async def test_fetch_then_pin(tmp_path: Path) -> None:
    server = KeyServer(BROKER_JWKS)
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        fetched = await BrokerKeys.afetch(URL, http=http)
    saved = tmp_path / "broker-delivery-signing.jwks.json"
    saved.write_text(json.dumps(fetched.jwks()))
    thumbprints = list(fetched.thumbprints().values())
    pinned = BrokerKeys.from_file(saved, thumbprints=thumbprints)
    assert pinned.thumbprints() == fetched.thumbprints()
    assert recipient(pinned).open_record(*record("record-valid"))
    with pytest.raises(ValueError, match="none of the thumbprints"):
        BrokerKeys.from_file(saved, thumbprints=["not-the-operators"])


def test_broker_keys_refuse_what_is_not_a_public_p256_set() -> None:
    private, public = generate_key("k1")
    with pytest.raises(ValueError, match="private key"):
        BrokerKeys({"keys": [private]})
    with pytest.raises(ValueError, match="P-256"):
        BrokerKeys({"keys": [generate_key("k2", crv="P-384")[1]]})
    with pytest.raises(ValueError, match="non-empty"):
        BrokerKeys({"keys": []})
    with pytest.raises(ValueError, match="https"):
        BrokerKeys({"keys": [public]}, url="http://isa-broker.test" + BROKER_KEYS_PATH)
    assert BrokerKeys({"keys": [public]}, url="http://127.0.0.1:8000", allow_http=True).url


def test_generate_key() -> None:
    private, public = generate_key("vawg-2026-12")
    assert "d" in private and "d" not in public
    assert public["kid"] == private["kid"] == "vawg-2026-12"
    assert (public["use"], public["alg"]) == ("enc", "ECDH-ES+A256KW")
    assert thumbprint(public) == thumbprint(private)
    unnamed = generate_key()[1]
    assert unnamed["kid"] == thumbprint(unnamed)
    with pytest.raises(ValueError, match="private JWK"):
        key_set([public])
    with pytest.raises(ValueError, match="kid"):
        generate_key("not a kid!")
