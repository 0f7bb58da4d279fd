"""The reference receiver (``examples/receiver.py``) without a broker: it refuses what does
not verify, stores each delivery once, and acknowledges the duties it stored."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook
from vectors import load_vectors

from isa_broker_client import BrokerClient, ClientSecret

pytest.importorskip("starlette", reason="the example receiver needs starlette")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
VALID = next(c for c in load_vectors("webhooks.json")["cases"] if c["name"] == "v1-valid")


def example() -> Any:
    name = "isa_example_receiver"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / "receiver.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


class DutyApi:
    """The broker's duty acknowledgement, answering ``status`` per duty id."""

    def __init__(self, answers: dict[str, int]) -> None:
        self.answers = answers
        self.acknowledged: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 300})
        duty_id = request.url.path.split("/")[3]
        status = self.answers[duty_id]
        if status == 200:
            self.acknowledged.append(duty_id)
            return httpx.Response(200, json={"id": duty_id, "status": "acknowledged"})
        code = {409: "duty_cleared", 503: "unavailable"}[status]
        return httpx.Response(status, json={"code": code, "status": status})


def receiver(tmp_path: Path, api: DutyApi | None = None) -> Any:
    module = example()
    return module.Receiver(
        party="eastborough-vawg",
        webhook_keys=VALID["keys"],
        private_keys=[],
        client=BrokerClient(
            "https://isa-broker.test",
            ClientSecret("eastborough-vawg.c1", "s"),
            transport=httpx.MockTransport(api or DutyApi({})),
            retries=0,
        ),
        store=module.Store(tmp_path / "receiver.sqlite3"),
        clock=lambda: VALID["now"],
    )


async def post(app: Any, body: bytes, headers: dict[str, str]) -> int:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as http:
        return (await http.post("/", content=body, headers=headers)).status_code


async def test_verifies_and_stores_each_delivery_once(tmp_path: Path) -> None:
    rx = receiver(tmp_path)
    app = rx.app()
    body = VALID["body"].encode()
    assert await post(app, body, VALID["headers"]) == 204
    assert await post(app, body, VALID["headers"]) == 204  # a retry: not stored again
    assert await post(app, body + b" ", VALID["headers"]) == 401
    event = rx.store.event(VALID["headers"]["webhook-id"])
    assert event == json.loads(VALID["body"])
    await rx.client.aclose()


async def test_acknowledges_the_duties_it_stored(tmp_path: Path) -> None:
    api = DutyApi({"dut_a": 200, "dut_b": 409, "dut_c": 503})
    rx = receiver(tmp_path, api)
    secret = VALID["keys"][0]
    now = VALID["now"]
    event = {**json.loads(VALID["body"]), "isadutyid": "dut_a,dut_b,dut_c"}
    event["isadutydue"] = "2026-01-16T09:30:00Z"
    body = json.dumps(event).encode()
    headers = {
        "webhook-id": "msg_with_duties",
        "webhook-timestamp": str(now),
        "webhook-signature": Webhook(secret).sign(
            "msg_with_duties", dt.datetime.fromtimestamp(now, tz=dt.UTC), body.decode()
        ),
    }
    assert await post(rx.app(), body, headers) == 204
    assert rx.store.open_duties() == ["dut_a", "dut_b", "dut_c"]
    await rx.acknowledge_duties()
    assert api.acknowledged == ["dut_a"]
    states = {d: rx.store.duty_state(d) for d in ("dut_a", "dut_b", "dut_c")}
    assert states == {"dut_a": "acknowledged", "dut_b": "cleared", "dut_c": "open"}
    api.answers["dut_c"] = 200
    await rx.acknowledge_duties()
    assert rx.store.open_duties() == []
    await rx.client.aclose()
