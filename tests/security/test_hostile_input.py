"""Hostile request bodies and request floods (OWASP API4:2023, unrestricted resource
consumption): each gets a 4xx problem naming the limit, nothing is stored, and nothing ever
answers 5xx."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.core.clients import create_client
from services.core.runtime import Runtime
from tests.conftest import EXTERNAL_KAFKA, make_settings
from tests.factories import release_notice
from tests.gateway.conftest import basic, problem_of
from tests.security.helpers import (
    AGENCY_SCOPES,
    ASSERTION_TYPE,
    FORM,
    PRISON,
    TOKEN,
    VAWG,
    b64url,
    bearer,
    gateway,
    token_of,
)

PUBLISH = "/v1/messages/release-notice"
SUBSCRIBE = "/v1/subscriptions"


@contextlib.asynccontextmanager
async def _gateway(
    tmp_path: Path, kafka_bootstrap: str, **overrides: Any
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    settings = make_settings(tmp_path, **overrides)
    rt = await Runtime.create(settings, kafka_bootstrap, embedded=not EXTERNAL_KAFKA)
    try:
        async with gateway(rt) as (_, http):
            yield rt, http
    finally:
        await rt.aclose()


async def _nothing_stored(rt: Runtime) -> None:
    events = {e["event"] for e in await rt.store.audit_entries()}
    assert not events & {"accepted", "refused", "subscription_created"}, events
    assert await rt.store.unpublished() == []
    assert await rt.store.list_subscriptions(PRISON) == []
    assert await rt.store.list_subscriptions(VAWG) == []


def _padded_notice(size: int) -> bytes:
    body = release_notice()
    body["release"]["establishment"] = "x" * size
    return json.dumps(body).encode()


async def test_a_body_over_the_limit_is_413_and_nothing_is_stored(
    http: httpx.AsyncClient, runtime: Runtime, token_for: Any
) -> None:
    token = await token_for(PRISON)
    limit = runtime.settings.http.max_body_bytes
    headers = {**bearer(token), "Content-Type": "application/json"}
    r = await http.post(PUBLISH, content=_padded_notice(limit + 1), headers=headers)
    assert r.status_code == 413, r.text
    assert problem_of(r)["code"] == "payload_too_large"
    vawg = await token_for(VAWG)
    big_sub = {
        "message_types": ["release-notice"],
        "channel": "inbox",
        "pad": "x" * (limit + 1),
    }
    r = await http.post(SUBSCRIBE, json=big_sub, headers=bearer(vawg))
    assert r.status_code == 413, r.text
    await _nothing_stored(runtime)
    # control: the same notice within the limit is accepted
    r = await http.post(PUBLISH, content=_padded_notice(10), headers=headers)
    assert r.status_code == 202, r.text


async def test_a_chunked_body_over_the_limit_is_413_and_nothing_is_stored(
    http: httpx.AsyncClient, runtime: Runtime, token_for: Any
) -> None:
    token = await token_for(PRISON)
    chunks_sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        body = _padded_notice(4 * runtime.settings.http.max_body_bytes)
        for i in range(0, len(body), 4096):
            chunks_sent += 1
            yield body[i : i + 4096]

    headers = {**bearer(token), "Content-Type": "application/json"}
    r = await http.post(PUBLISH, content=chunks(), headers=headers)
    assert r.status_code == 413, r.text
    assert problem_of(r)["code"] == "payload_too_large"
    await _nothing_stored(runtime)


async def test_a_content_length_beyond_any_limit_is_refused_before_reading(
    http: httpx.AsyncClient, runtime: Runtime, token_for: Any
) -> None:
    token = await token_for(PRISON)
    for declared, status in [
        (str(10**30), 413),
        ("99999999999999999999999999999999999999999999", 413),
        ("-1", 400),
        ("12abc", 400),
    ]:
        headers = {
            **bearer(token),
            "Content-Type": "application/json",
            "Content-Length": declared,
        }
        request = http.build_request("POST", PUBLISH, content=b"{}", headers=headers)
        request.headers["Content-Length"] = declared
        r = await http.send(request)
        assert r.status_code == status, (declared, r.text)
    await _nothing_stored(runtime)


async def test_deeply_nested_json_is_refused_without_a_crash(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with _gateway(tmp_path, kafka_bootstrap, max_body_bytes=1024 * 1024) as (rt, http):
        token, _ = await token_of(http, rt, PRISON, AGENCY_SCOPES)
        headers = {**bearer(token), "Content-Type": "application/json"}
        depth = 100_000
        bodies = {
            "arrays": b"[" * depth + b"]" * depth,
            "objects": b'{"a":' * depth + b"1" + b"}" * depth,
            "unclosed": b"[" * depth,
            "inside a notice": json.dumps(release_notice())[:-1].encode()
            + b',"x":'
            + b"[" * depth
            + b"]" * depth
            + b"}",
        }
        for name, body in bodies.items():
            for path in (PUBLISH, SUBSCRIBE, "/v1/inbox/ack", "/v1/dead-letters/replay"):
                r = await http.post(path, content=body, headers=headers)
                assert 400 <= r.status_code < 500, (name, path, r.status_code, r.text[:200])
                if name != "unclosed":
                    assert problem_of(r)["code"] == "json_too_deep", (name, path, r.text)
        await _nothing_stored(rt)


async def test_a_deeply_nested_client_assertion_is_invalid_client(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    def form(payload: bytes) -> dict[str, str]:
        assertion = f"{b64url(b'{}')}.{b64url(payload)}.{b64url(b'sig')}"
        return {**FORM, "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}

    # deeper than Python's json recursion limit, within the token endpoint's 16 KiB
    for payload in (b"[" * 5000 + b"]" * 5000, b'{"sub":' * 1200 + b'"x"' + b"}" * 1200):
        r = await http.post(TOKEN, data=form(payload))
        assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text
    # far deeper: refused for its size before anything parses it
    r = await http.post(TOKEN, data=form(b"[" * 100_000 + b"]" * 100_000))
    assert r.status_code in (400, 401, 413), r.text


async def test_huge_numbers_are_refused_without_a_crash(
    http: httpx.AsyncClient, runtime: Runtime, token_for: Any
) -> None:
    token = await token_for(PRISON)
    headers = {**bearer(token), "Content-Type": "application/json"}
    huge = "9" * 5000
    notice = json.dumps(release_notice())
    cases: list[tuple[str, str, bytes]] = [
        ("POST", "/v1/inbox/ack", f'{{"cursor": {huge}}}'.encode()),
        ("POST", "/v1/inbox/ack", b'{"cursor": 1e999}'),
        ("POST", "/v1/inbox/ack", b'{"cursor": 9223372036854775808}'),
        ("POST", "/v1/inbox/ack", b'{"cursor": -9223372036854775809}'),
        ("POST", "/v1/inbox/ack", b'{"cursor": 1.5}'),
        (
            "POST",
            "/v1/subscriptions/x/rotate-secret",
            f'{{"overlap_seconds": {huge}}}'.encode(),
        ),
        (
            "POST",
            PUBLISH,
            notice.replace('"daily_dose_mg": 35', f'"daily_dose_mg": {huge}').encode(),
        ),
        ("POST", PUBLISH, notice.replace('"daily_dose_mg": 35', '"daily_dose_mg": 1e400').encode()),
        ("POST", PUBLISH, notice.replace('"daily_dose_mg": 35', '"daily_dose_mg": NaN').encode()),
        (
            "POST",
            PUBLISH,
            notice.replace('"daily_dose_mg": 35', '"daily_dose_mg": -Infinity').encode(),
        ),
    ]
    assert '"daily_dose_mg": 35' in notice
    for method, path, body in cases:
        r = await http.request(method, path, content=body, headers=headers)
        assert r.status_code in (400, 404, 422), (path, body[-80:], r.status_code, r.text[:300])
        problem_of(r)
    for params in (
        {"after": huge},
        {"after": "9223372036854775808"},
        {"limit": huge},
        {"wait": "1e999"},
        {"wait": "nan"},
        {"wait": "inf"},
    ):
        r = await http.get("/v1/inbox", params=params, headers=headers)
        assert r.status_code == 422, (params, r.text[:300])
    for params in ({"after": huge}, {"after": str(2**63)}, {"limit": huge}):
        r = await http.get("/v1/audit", params=params, headers=headers)
        assert r.status_code in (403, 422), (params, r.text[:300])
    await _nothing_stored(runtime)


async def test_invalid_utf8_and_bad_strings_are_422(
    http: httpx.AsyncClient, runtime: Runtime, token_for: Any
) -> None:
    token = await token_for(PRISON)
    headers = {**bearer(token), "Content-Type": "application/json"}
    notice = json.dumps(release_notice())
    bodies = {
        "invalid utf-8": notice.replace("Eastborough", "East\udcffborough", 1).encode(
            "utf-8", "surrogateescape"
        ),
        "overlong encoding": notice.encode().replace(b"Eastborough", b"East\xc0\xafborough", 1),
        "latin-1": notice.replace("Eastborough", "Eastbor\u00f6ugh", 1).encode("latin-1"),
        "utf-16": notice.encode("utf-16"),
        "lone surrogate escape": notice.replace("Eastborough", "East\\ud800borough", 1).encode(),
        "nul in a string": notice.replace("Eastborough", "East\\u0000borough", 1).encode(),
        "nul in a key": b'{"a\\u0000": 1}',
        "not json": b"<xml/>",
        "truncated": notice.encode()[:-5],
        "bom": b"\xef\xbb\xbf" + notice.encode(),
    }
    for name, body in bodies.items():
        r = await http.post(PUBLISH, content=body, headers=headers)
        assert r.status_code == 422, (name, r.status_code, r.text[:300])
        assert problem_of(r)["code"] == "validation_failed", name
    await _nothing_stored(runtime)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/json; charset=latin-1",
        "application/json; charset=utf-16",
        "application/merge-patch+json",
        "application/problem+json",
        "application/jsonx",
        "",
        None,
    ],
)
async def test_a_body_that_is_not_application_json_is_415(
    http: httpx.AsyncClient, runtime: Runtime, token_for: Any, content_type: str | None
) -> None:
    token = await token_for(PRISON)
    for path in (PUBLISH, SUBSCRIBE):
        request = http.build_request(
            "POST", path, content=json.dumps(release_notice()).encode(), headers=bearer(token)
        )
        if content_type is None:
            request.headers.pop("Content-Type", None)
        else:
            request.headers["Content-Type"] = content_type
        r = await http.send(request)
        assert r.status_code == 415, (path, content_type, r.text)
        assert problem_of(r)["code"] == "unsupported_media_type"
    await _nothing_stored(runtime)


async def test_the_token_endpoint_takes_only_form_bodies(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    creds = await create_client(runtime, PRISON)
    auth = basic(creds["client_id"], creds["client_secret"])
    for kwargs in (
        {"json": FORM},
        {"content": b"grant_type=client_credentials", "headers": {"Content-Type": "text/plain"}},
        {"content": b"grant_type=client_credentials&grant_type=password"},
        {"content": b"grant_type=client_credentials&scope=\xff"},
        {"content": b"a=" + b"x" * 20_000},
    ):
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            **kwargs.pop("headers", {}),  # type: ignore[dict-item]
            **auth,
        }
        if "json" in kwargs:
            headers.pop("Content-Type")
        r = await http.post(TOKEN, headers=headers, **kwargs)  # type: ignore[arg-type]
        assert r.status_code == 400, (kwargs, r.text)
        assert r.json()["error"] == "invalid_request"


async def test_oversized_header_and_control_characters_are_refused(
    http: httpx.AsyncClient, runtime: Runtime, token_for: Any
) -> None:
    token = await token_for(VAWG)
    r = await http.get("/v1/subscriptions", headers={**bearer(token), "X-Pad": "x" * 10_000})
    assert r.status_code == 431 and problem_of(r)["code"] == "header_too_large"
    r = await http.get("/v1/subscriptions", headers={"Authorization": "Bearer " + "A" * 10_000})
    assert r.status_code == 431
    for url in ("/v1/deliveries/abc%00def", "/v1/deliveries?subscription_id=a%00b"):
        r = await http.get(url, headers=bearer(token))
        assert r.status_code == 400, (url, r.text)
    r = await http.get("/v1/deliveries/" + "a" * 5000, headers=bearer(token))
    assert r.status_code == 422, r.text


async def test_too_many_requests_get_429_with_retry_after(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with _gateway(tmp_path, kafka_bootstrap, rate_limit_per_minute=30) as (rt, http):
        token, _ = await token_of(http, rt, VAWG)
        statuses = []
        for _ in range(10):
            r = await http.get("/v1/subscriptions", headers=bearer(token))
            statuses.append(r.status_code)
            if r.status_code == 429:
                break
        assert statuses[0] == 200 and statuses[-1] == 429, statuses
        body = problem_of(r)
        assert body["code"] == "rate_limited"
        assert r.headers["retry-after"].isdigit() and int(r.headers["retry-after"]) >= 1
        assert body["retry_after"] == int(r.headers["retry-after"])
        # another client of the same agency is not held up
        other, _ = await token_of(http, rt, VAWG)
        assert (await http.get("/v1/subscriptions", headers=bearer(other))).status_code == 200


async def test_token_endpoint_flood_gets_429_with_retry_after(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with _gateway(tmp_path, kafka_bootstrap, token_rate_limit_per_minute=20) as (rt, http):
        creds = await create_client(rt, VAWG)
        statuses = []
        for _ in range(10):
            # a secret-guessing run against one client id
            r = await http.post(TOKEN, data=FORM, headers=basic(creds["client_id"], "cs_guess"))
            statuses.append(r.status_code)
            if r.status_code == 429:
                break
        assert statuses[0] == 401 and statuses[-1] == 429, statuses
        assert r.json()["error"] == "temporarily_unavailable"
        assert r.headers["retry-after"].isdigit() and int(r.headers["retry-after"]) >= 1
