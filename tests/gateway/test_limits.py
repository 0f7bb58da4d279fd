"""Input limits and rate limits (services/gateway/limits.py): whatever arrives, a 4xx problem
and nothing stored, never a 500."""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from services.core.clients import create_client
from services.core.runtime import Runtime
from services.gateway.app import create_app
from services.gateway.limits import RateLimiter, is_json_media_type, nesting_exceeds
from tests.conftest import EXTERNAL_KAFKA, make_settings
from tests.factories import release_notice
from tests.gateway.conftest import TokenFor, basic, bearer, problem_of

NOTICE = "/v1/messages/release-notice"
JSON_HEADERS = {"content-type": "application/json"}


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Gateway:
    runtime: Runtime
    app: FastAPI
    http: httpx.AsyncClient
    clock: FakeMonotonic

    async def credentials(self, party: str) -> dict[str, Any]:
        return await create_client(self.runtime, party)

    async def token(self, party: str) -> str:
        creds = await self.credentials(party)
        r = await self.http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(creds["client_id"], creds["client_secret"]),
        )
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    def client_from(self, address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url=self.runtime.settings.public_url)


MakeGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def gateway_with(tmp_path: Path, kafka_bootstrap: str) -> AsyncIterator[MakeGateway]:
    """A gateway on its own runtime with settings overrides and a fake monotonic clock."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(**overrides: object) -> Gateway:
            settings = make_settings(tmp_path / uuid.uuid4().hex[:8], **overrides)
            rt = await Runtime.create(settings, kafka_bootstrap, embedded=not EXTERNAL_KAFKA)
            stack.push_async_callback(rt.aclose)
            clock = FakeMonotonic()
            app = create_app(rt, monotonic=clock)
            http = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=settings.public_url
            )
            stack.push_async_callback(http.aclose)
            return Gateway(rt, app, http, clock)

        yield make


# -- body size -----------------------------------------------------------------------------------


async def test_declared_oversize_is_413_and_nothing_stored(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime
) -> None:
    token = await token_for("hmp-northgate")
    body = release_notice()
    body["release"]["establishment"] = "x" * 200
    content = json.dumps(body).encode() + b" " * (64 * 1024)
    r = await http.post(NOTICE, content=content, headers={**bearer(token), **JSON_HEADERS})
    assert r.status_code == 413
    p = problem_of(r)
    assert p["code"] == "payload_too_large" and p["max_bytes"] == 64 * 1024
    assert await runtime.store.unpublished() == []


async def test_declared_oversize_is_refused_without_reading_the_body(runtime: Runtime) -> None:
    app = create_app(runtime)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body was read")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": NOTICE,
        "raw_path": NOTICE.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"10000000")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["code"] == "payload_too_large"


async def test_chunked_oversize_is_cut_off_with_413(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime
) -> None:
    token = await token_for("hmp-northgate")
    produced = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal produced
        yield b'{"person": "'
        for _ in range(1000):  # 1 MB, far past the 64 KiB limit
            produced += 1
            yield b"x" * 1024

    r = await http.post(NOTICE, content=chunks(), headers={**bearer(token), **JSON_HEADERS})
    assert r.status_code == 413 and problem_of(r)["code"] == "payload_too_large"
    assert produced < 100, "the body was read to the end"
    assert await runtime.store.unpublished() == []


async def test_invalid_content_length_is_400(http: httpx.AsyncClient) -> None:
    # an explicit Content-Length header is sent as given
    r = await http.post(NOTICE, content=b"{}", headers={**JSON_HEADERS, "content-length": "twelve"})
    assert r.status_code == 400 and problem_of(r)["code"] == "invalid_request"


# -- media type ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ctype",
    [
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",
        "application/merge-patch+json",
        "application/json; charset=latin-1",
        "application/jsonx",
    ],
)
async def test_json_endpoints_refuse_other_media_types(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime, ctype: str
) -> None:
    token = await token_for("hmp-northgate")
    r = await http.post(
        NOTICE,
        content=json.dumps(release_notice()),
        headers={**bearer(token), "content-type": ctype},
    )
    assert r.status_code == 415
    p = problem_of(r)
    assert p["code"] == "unsupported_media_type" and p["expected"] == "application/json"
    assert "application/json" in p["detail"]
    assert await runtime.store.unpublished() == []


async def test_json_body_without_content_type_is_415(
    http: httpx.AsyncClient, token_for: TokenFor
) -> None:
    token = await token_for("eastborough-vawg")
    r = await http.post("/v1/inbox/ack", content=b'{"cursor": 0}', headers=bearer(token))
    assert r.status_code == 415 and problem_of(r)["code"] == "unsupported_media_type"


async def test_json_with_utf8_charset_is_accepted(
    http: httpx.AsyncClient, token_for: TokenFor
) -> None:
    token = await token_for("hmp-northgate")
    r = await http.post(
        NOTICE,
        content=json.dumps(release_notice()),
        headers={**bearer(token), "content-type": 'Application/JSON; Charset="UTF-8"'},
    )
    assert r.status_code == 202, r.text


def test_json_media_type_rule() -> None:
    assert is_json_media_type("application/json")
    assert is_json_media_type("application/json;charset=utf-8")
    assert not is_json_media_type("application/problem+json")
    assert not is_json_media_type("application/json; charset=utf-16")


async def test_token_endpoint_keeps_its_form_check(http: httpx.AsyncClient) -> None:
    r = await http.post("/oauth/token", json={"grant_type": "client_credentials"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


# -- JSON depth and well-formedness --------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"[" * 30_000 + b"]" * 30_000,
        b"[" * 60_000,  # never closed
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    ],
    ids=["balanced-arrays", "unclosed", "objects"],
)
async def test_deep_nesting_is_refused_before_parsing(
    http: httpx.AsyncClient, token_for: TokenFor, content: bytes
) -> None:
    token = await token_for("eastborough-vawg")
    # /v1/inbox/ack is parsed by FastAPI with Python's json, which recursion would kill
    for path in (NOTICE, "/v1/inbox/ack", "/v1/dead-letters/replay"):
        r = await http.post(path, content=content, headers={**bearer(token), **JSON_HEADERS})
        assert r.status_code == 400, (path, r.status_code)
        p = problem_of(r)
        assert p["code"] == "json_too_deep" and p["max_depth"] == 16 and "16" in p["detail"]


async def test_100_000_deep_is_refused_even_where_the_body_may_be_that_large(
    gateway_with: MakeGateway,
) -> None:
    gw = await gateway_with(max_body_bytes=1024 * 1024)
    auth = bearer(await gw.token("hmp-northgate"))
    content = b"[" * 100_000 + b"]" * 100_000
    r = await gw.http.post(NOTICE, content=content, headers={**auth, **JSON_HEADERS})
    assert r.status_code == 400 and problem_of(r)["code"] == "json_too_deep"
    # with the default 64 KiB limit the size alone refuses it
    gw = await gateway_with()
    auth = bearer(await gw.token("hmp-northgate"))
    r = await gw.http.post(NOTICE, content=content, headers={**auth, **JSON_HEADERS})
    assert r.status_code == 413


async def test_brackets_inside_strings_do_not_count(
    http: httpx.AsyncClient, token_for: TokenFor
) -> None:
    token = await token_for("hmp-northgate")
    body = release_notice()
    body["release"]["establishment"] = '[[[[[[[[[[{{{{{{{{{{\\"[[[[[[[[[[ HMP "quoted"'
    r = await http.post(NOTICE, json=body, headers=bearer(token))
    assert r.status_code == 202, r.text


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(alphabet=st.sampled_from('[]{}"\\ab\n\u00e9\u2028'), max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(alphabet='[]{}"\\k', max_size=5), inner, max_size=3)
    ),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES, limit=st.integers(1, 8), ascii_only=st.booleans())
def test_nesting_scanner_agrees_with_the_parsed_depth(
    value: Any, limit: int, ascii_only: bool
) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert nesting_exceeds(text, limit) == (_depth(value) > limit)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b'{"x": ' + b"9" * 5000 + b"}", "huge integer"),
        (b'{"person": {"given_name": "\xff\xfe"}}', "invalid UTF-8"),
        (b'{"x": NaN}', "NaN"),
        (b'{"x": -Infinity}', "Infinity"),
        (b'{"x": "\\ud800"}', "lone surrogate"),
        (b"\xef\xbb\xbf{}", "byte order mark"),
        (b'{"x": 1', "truncated"),
        (b'{"x": 1} {"y": 2}', "two documents"),
    ],
)
async def test_malformed_json_is_422_naming_the_cause(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime, content: bytes, why: str
) -> None:
    token = await token_for("hmp-northgate")
    r = await http.post(NOTICE, content=content, headers={**bearer(token), **JSON_HEADERS})
    assert r.status_code == 422, why
    p = problem_of(r)
    assert p["code"] == "validation_failed" and p["errors"][0]["code"] == "json_invalid"
    assert "line 1 column" in p["detail"]
    assert await runtime.store.unpublished() == []


async def test_huge_integer_in_a_model_body_is_4xx(
    http: httpx.AsyncClient, token_for: TokenFor
) -> None:
    token = await token_for("eastborough-vawg")
    h = {**bearer(token), **JSON_HEADERS}
    r = await http.post("/v1/inbox/ack", content=b'{"cursor": ' + b"9" * 5000 + b"}", headers=h)
    assert r.status_code == 422
    # representable, but beyond any store's integer column
    r = await http.post("/v1/inbox/ack", json={"cursor": 2**70}, headers=bearer(token))
    assert r.status_code == 422 and problem_of(r)["errors"][0]["pointer"] == "/cursor"


async def test_nul_in_a_string_is_422_naming_the_field(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime
) -> None:
    token = await token_for("hmp-northgate")
    body = release_notice()
    body["person"]["given_name"] = "Al\u0000exis"
    r = await http.post(NOTICE, json=body, headers=bearer(token))
    assert r.status_code == 422
    p = problem_of(r)
    assert [e["pointer"] for e in p["errors"]] == ["/person/given_name"]
    assert "Alexis" not in r.text and "Al\\u0000exis" not in r.text
    assert await runtime.store.unpublished() == []


async def test_control_characters_in_free_text_are_422(
    http: httpx.AsyncClient, token_for: TokenFor
) -> None:
    token = await token_for("hmp-northgate")
    body = release_notice()
    body["destination"]["local_authority"] = "East\u001bborough"
    r = await http.post(NOTICE, json=body, headers=bearer(token))
    assert r.status_code == 422
    assert [e["pointer"] for e in problem_of(r)["errors"]] == ["/destination/local_authority"]


@pytest.mark.parametrize("value", [[], [release_notice()], 42, "release", None, True])
async def test_a_body_that_is_not_an_object_is_422(
    http: httpx.AsyncClient, token_for: TokenFor, value: Any
) -> None:
    token = await token_for("eastborough-vawg", scopes=["subscriptions:manage", "inbox:ack"])
    for path in (NOTICE, "/v1/inbox/ack", "/v1/dead-letters/replay", "/v1/subscriptions"):
        r = await http.post(
            path, content=json.dumps(value), headers={**bearer(token), **JSON_HEADERS}
        )
        # the message route checks the publish scope first (403); the others validate (422)
        assert r.status_code in (403, 422), (path, r.status_code, r.text)
        problem_of(r)


# -- request target and headers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/v1/deliveries/%00",
        "/v1/deliveries/msg_%0a",
        "/v1/deliveries?message_id=%00",
        "/v1/decisions/%00",
        "/v1/subscriptions/%7f/enable",
    ],
)
async def test_control_characters_in_path_or_query_are_400(
    http: httpx.AsyncClient, token_for: TokenFor, target: str
) -> None:
    token = await token_for("eastborough-vawg")
    method = "POST" if target.endswith("/enable") else "GET"
    r = await http.request(method, target, headers=bearer(token))
    assert r.status_code == 400 and problem_of(r)["code"] == "invalid_request"


@pytest.mark.parametrize(
    "target",
    [
        "/v1/deliveries/" + "a" * 65,
        "/v1/deliveries/%C3%A9t%C3%A9",
        "/v1/deliveries/..%2F..%2Fetc",
        "/v1/deliveries/%ff%fe",
        "/v1/deliveries?limit=abc",
        "/v1/deliveries?limit=100000",
        "/v1/deliveries?since=yesterday",
        "/v1/deliveries?status=lost",
        "/v1/deliveries?message_id=" + "a" * 65,
        "/v1/inbox?wait=nan",
        "/v1/inbox?wait=inf",
        "/v1/inbox?after=" + "9" * 30,
        "/v1/inbox?after=-1",
        "/v1/dead-letters?subscription_id=%F0%9F%92%A5",
    ],
)
async def test_odd_path_and_query_parameters_are_4xx(
    http: httpx.AsyncClient, token_for: TokenFor, target: str
) -> None:
    token = await token_for("eastborough-vawg")
    r = await http.get(target, headers=bearer(token))
    assert 400 <= r.status_code < 500, (target, r.status_code, r.text)
    p = problem_of(r)
    if r.status_code == 422:
        assert p["errors"] and p["errors"][0]["in"] in ("path", "query")


async def test_purpose_query_is_bounded(http: httpx.AsyncClient, token_for: TokenFor) -> None:
    token = await token_for("hmp-northgate")
    for purposes in (["x" * 100], ["Victim Safety"], ["victim-safety"] * 11):
        r = await http.post(
            NOTICE, params={"purpose": purposes}, json=release_notice(), headers=bearer(token)
        )
        assert r.status_code == 422, purposes
        assert problem_of(r)["errors"][0]["in"] == "query"


@pytest.mark.parametrize("key", ["k" * 201, "", "caf\u00e9"])
async def test_idempotency_key_is_bounded(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime, key: str
) -> None:
    token = await token_for("hmp-northgate")
    r = await http.post(
        NOTICE,
        json=release_notice(),
        headers={**bearer(token), "Idempotency-Key": key.encode()},
    )
    assert r.status_code == 422
    p = problem_of(r)
    assert p["errors"][0]["in"] == "header" and "idempotency" in p["detail"].lower()
    assert await runtime.store.unpublished() == []


async def test_an_oversized_header_is_431(http: httpx.AsyncClient) -> None:
    r = await http.get("/v1/deliveries", headers=bearer("x" * 10_000))
    assert r.status_code == 431
    p = problem_of(r)
    assert p["code"] == "header_too_large" and p["header"] == "authorization"


async def test_method_not_allowed_keeps_its_allow_header(http: httpx.AsyncClient) -> None:
    r = await http.get("/oauth/token")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert problem_of(r)["code"] == "method_not_allowed"


async def test_unknown_message_type_with_odd_name_is_4xx(
    http: httpx.AsyncClient, token_for: TokenFor
) -> None:
    token = await token_for("hmp-northgate")
    for name in ("x" * 500, "%E2%80%8Brelease-notice", "release-notice%20", "..%2F"):
        r = await http.post(f"/v1/messages/{name}", json={}, headers=bearer(token))
        assert r.status_code in (307, 404, 422), name  # "..%2F" is "../": a redirect to "/"
        if r.status_code >= 400:
            problem_of(r)


# -- rate limits ---------------------------------------------------------------------------------


async def test_client_over_its_rate_gets_429_with_retry_after(gateway_with: MakeGateway) -> None:
    gw = await gateway_with(rate_limit_per_minute=60)  # 1 a second, bursts of 6
    first = bearer(await gw.token("eastborough-vawg"))
    other = bearer(await gw.token("eastborough-housing"))
    for _ in range(6):
        assert (await gw.http.get("/v1/deliveries", headers=first)).status_code == 200
    r = await gw.http.get("/v1/deliveries", headers=first)
    assert r.status_code == 429
    p = problem_of(r)
    assert p["code"] == "rate_limited" and p["retry_after"] == 1
    assert r.headers["retry-after"] == "1"
    # other clients are not affected
    assert (await gw.http.get("/v1/deliveries", headers=other)).status_code == 200
    # one token back a second later
    gw.clock.advance(1.0)
    assert (await gw.http.get("/v1/deliveries", headers=first)).status_code == 200
    assert (await gw.http.get("/v1/deliveries", headers=first)).status_code == 429


async def test_retry_after_counts_whole_seconds(gateway_with: MakeGateway) -> None:
    gw = await gateway_with(rate_limit_per_minute=6)  # one every 10 s, bursts of 1
    h = bearer(await gw.token("eastborough-vawg"))
    assert (await gw.http.get("/v1/deliveries", headers=h)).status_code == 200
    gw.clock.advance(2.5)
    r = await gw.http.get("/v1/deliveries", headers=h)
    assert r.status_code == 429 and r.headers["retry-after"] == "8"


async def test_rate_limit_zero_disables_it(gateway_with: MakeGateway) -> None:
    gw = await gateway_with(rate_limit_per_minute=0)
    h = bearer(await gw.token("eastborough-vawg"))
    for _ in range(50):
        assert (await gw.http.get("/v1/deliveries", headers=h)).status_code == 200


async def test_token_endpoint_limits_each_address(gateway_with: MakeGateway) -> None:
    gw = await gateway_with(token_rate_limit_per_minute=6)
    form = {"grant_type": "client_credentials"}
    for i in range(6):  # each a different (unknown) client id, so only the address counts
        r = await gw.http.post("/oauth/token", data=form, headers=basic(f"nobody-{i}", "pw"))
        assert r.status_code == 401
    r = await gw.http.post("/oauth/token", data=form, headers=basic("nobody-7", "pw"))
    assert r.status_code == 429
    assert r.json()["error"] == "temporarily_unavailable"
    assert "address" in r.json()["error_description"]
    assert int(r.headers["retry-after"]) >= 1 and r.headers["cache-control"] == "no-store"
    # another address is served
    creds = await gw.credentials("eastborough-vawg")
    async with gw.client_from("192.0.2.7") as elsewhere:
        r = await elsewhere.post(
            "/oauth/token", data=form, auth=(creds["client_id"], creds["client_secret"])
        )
    assert r.status_code == 200, r.text
    gw.clock.advance(10)
    r = await gw.http.post("/oauth/token", data=form, headers=basic("nobody-8", "pw"))
    assert r.status_code == 401


async def test_token_endpoint_limits_each_client_id(gateway_with: MakeGateway) -> None:
    gw = await gateway_with(token_rate_limit_per_minute=60)  # bursts of 6 per client id
    creds = await gw.credentials("eastborough-vawg")
    form = {"grant_type": "client_credentials"}
    auth = (creds["client_id"], creds["client_secret"])
    for _ in range(6):
        assert (await gw.http.post("/oauth/token", data=form, auth=auth)).status_code == 200
    r = await gw.http.post("/oauth/token", data=form, auth=auth)
    assert r.status_code == 429 and r.json()["error"] == "temporarily_unavailable"
    # wrong secrets count against the id too (that is what slows guessing)
    r = await gw.http.post("/oauth/token", data=form, auth=(creds["client_id"], "guess"))
    assert r.status_code == 429
    other = await gw.credentials("eastborough-housing")
    r = await gw.http.post(
        "/oauth/token", data=form, auth=(other["client_id"], other["client_secret"])
    )
    assert r.status_code == 200


def _assertion(payload: bytes) -> str:
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{b64(b'{}')}.{b64(payload)}.{b64(b'sig')}"


@pytest.mark.parametrize(
    "payload", [b"[" * 5_000 + b"]" * 5_000, b'{"sub": ' + b"[" * 5_000 + b"}", b"\xff"]
)
async def test_malformed_client_assertion_is_invalid_client(
    http: httpx.AsyncClient, payload: bytes
) -> None:
    r = await http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": _assertion(payload),
        },
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_rate_limiter_table_stays_bounded() -> None:
    clock = FakeMonotonic()
    limiter = RateLimiter(60, clock=clock, max_keys=100)
    for i in range(1000):
        assert limiter.take(f"client-{i}") == 0.0
    assert len(limiter) == 100
    # buckets idle long enough to have refilled are dropped
    clock.advance(limiter.burst / 1.0)
    limiter.take("fresh")
    assert len(limiter) == 1


def test_rate_limiter_refills_at_its_rate_up_to_the_burst() -> None:
    clock = FakeMonotonic()
    limiter = RateLimiter(600, clock=clock)  # 10 a second, bursts of 60
    assert limiter.burst == 60
    assert all(limiter.take("a") == 0.0 for _ in range(60))
    assert limiter.take("a") == pytest.approx(0.1)
    clock.advance(0.5)
    assert all(limiter.take("a") == 0.0 for _ in range(5))
    assert limiter.take("a") > 0
    clock.advance(3600)
    assert sum(limiter.take("a") == 0.0 for _ in range(100)) == 60
    assert RateLimiter(5).burst == 1 and RateLimiter(0).take("x") == 0.0


# -- fuzzing -------------------------------------------------------------------------------------

ANY_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and Infinity serialise to invalid JSON: refused, never a 500
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=25,
)


def _paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            out.extend(_paths(item, (*prefix, key)))
    return out


@st.composite
def notice_bodies(draw: st.DrawFn) -> bytes:
    """Arbitrary JSON, or a valid release notice with one part replaced by arbitrary JSON."""
    if draw(st.booleans()):
        value: Any = draw(ANY_JSON)
    else:
        value = release_notice()
        path = draw(st.sampled_from(_paths(value)))
        target = value
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = draw(ANY_JSON)
    return json.dumps(value, ensure_ascii=draw(st.booleans())).encode()


@pytest.fixture
async def unlimited(gateway_with: MakeGateway) -> tuple[Gateway, dict[str, str]]:
    gw = await gateway_with(rate_limit_per_minute=0)
    return gw, bearer(await gw.token("hmp-northgate"))


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=notice_bodies())
async def test_fuzzed_release_notice_bodies_never_get_a_5xx(
    unlimited: tuple[Gateway, dict[str, str]], body: bytes
) -> None:
    gw, auth = unlimited
    r = await gw.http.post(NOTICE, content=body, headers={**auth, **JSON_HEADERS})
    event(f"HTTP {r.status_code}")
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        problem_of(r)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    path=st.sampled_from(["/v1/inbox/ack", "/v1/dead-letters/replay", "/v1/subscriptions"]),
    value=ANY_JSON,
)
async def test_fuzzed_model_bodies_never_get_a_5xx(
    unlimited: tuple[Gateway, dict[str, str]], path: str, value: Any
) -> None:
    gw, auth = unlimited
    r = await gw.http.post(path, content=json.dumps(value), headers={**auth, **JSON_HEADERS})
    event(f"HTTP {r.status_code}")
    assert r.status_code < 500, r.text
