"""The shared SDK harness and test vectors (``sdk/test-vectors``).

The committed vectors are checked against the broker's own code, so they cannot drift from
it: each webhook case against ``services.core.webhooks.signing.verify``, each record case
against ``services.core.crypto.recipient.open_record`` / ``open_``, and each problem case's
``expect`` against its ``body``. The generator is run too, into a temporary folder."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.core.crypto import recipient
from services.core.errors import AuthenticationFailed
from services.core.webhooks import signing

TEST_VECTORS = Path(__file__).resolve().parents[2] / "sdk" / "test-vectors"
GENERATOR = TEST_VECTORS / "generate.py"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((TEST_VECTORS / name).read_text(encoding="utf-8"))
    return data


WEBHOOKS = _load("webhooks.json")
RECORDS = _load("records.json")
PROBLEMS = _load("problems.json")


def _cases(data: Mapping[str, Any]) -> list[Any]:
    return [pytest.param(c, id=c["name"]) for c in data["cases"]]


# -- the harness ---------------------------------------------------------------------------------


@pytest.mark.integration
def test_sdk_env_serves_tokens_to_the_sender(sdk_env: dict[str, str]) -> None:
    """The broker of ``sdk_env`` is running and knows the sender's demo client."""
    assert set(sdk_env) == {
        "ISA_GATEWAY_URL",
        "ISA_KAFKA_BOOTSTRAP_SERVERS",
        "ISA_SENDER_PARTY",
        "ISA_SENDER_CLIENT_ID",
        "ISA_SENDER_CLIENT_SECRET",
        "ISA_RECIPIENT_PARTY",
        "ISA_RECIPIENT_CLIENT_ID",
        "ISA_RECIPIENT_CLIENT_SECRET",
        "ISA_AGENCY_TOPIC",
        "ISA_RELEASE_NOTICE_FILE",
        "ISA_TEST_VECTORS",
    }
    r = httpx.post(
        sdk_env["ISA_GATEWAY_URL"] + "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(sdk_env["ISA_SENDER_CLIENT_ID"], sdk_env["ISA_SENDER_CLIENT_SECRET"]),
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "Bearer"
    assert "publish:release-notice" in r.json()["scope"].split()
    assert Path(sdk_env["ISA_TEST_VECTORS"], "webhooks.json").is_file()
    assert json.loads(Path(sdk_env["ISA_RELEASE_NOTICE_FILE"]).read_text())["risk"]


# -- the format ----------------------------------------------------------------------------------

WEBHOOK_KEYS = {"name", "description", "keys", "headers", "body", "now", "tolerance", "valid"}
RECORD_KEYS = {"name", "description", "kind", "token", "context", "valid", "error", "event"}
PROBLEM_KEYS = {"name", "description", "status", "headers", "body", "expect"}
EXPECT_KEYS = {"code", "status", "title", "detail", "retry_after", "fields", "clause"}


def test_the_files_have_the_documented_shape() -> None:
    for data in (WEBHOOKS, RECORDS, PROBLEMS):
        assert data["version"] == 1
        names = [c["name"] for c in data["cases"]]
        assert len(names) == len(set(names)), "case names are unique"
    assert set(WEBHOOKS) == {"version", "cases"}
    for c in WEBHOOKS["cases"]:
        assert set(c) == WEBHOOK_KEYS | {"error"}, c["name"]
        assert set(c["headers"]) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
        assert all(k.startswith(("whsec_", "whpk_")) for k in c["keys"])
        assert c["error"] in (None, "timestamp", "signature")
        assert c["tolerance"] == signing.DEFAULT_TOLERANCE
    assert set(RECORDS) == {
        "version",
        "recipient",
        "recipient_private_jwks",
        "broker_delivery_signing_jwks",
        "cases",
    }
    assert all("d" not in k for k in RECORDS["broker_delivery_signing_jwks"]["keys"])
    for c in RECORDS["cases"]:
        assert set(c) == RECORD_KEYS, c["name"]
        assert c["kind"] in ("record", "webhook")
        assert set(c["context"]) == {"message_id", "delivery_id"}
        assert c["error"] in (
            None,
            "malformed",
            "unknown_key",
            "misrouted",
            "not_signed_by_broker",
        )
    assert set(PROBLEMS) == {"version", "cases"}
    for c in PROBLEMS["cases"]:
        assert set(c) == PROBLEM_KEYS, c["name"]
        assert set(c["expect"]) == EXPECT_KEYS, c["name"]
        assert all(h == h.lower() for h in c["headers"])


def test_the_cases_the_sdks_rely_on_are_there() -> None:
    names = {
        f: {c["name"] for c in d["cases"]}
        for f, d in (("webhooks", WEBHOOKS), ("records", RECORDS), ("problems", PROBLEMS))
    }
    assert {
        "v1-valid",
        "v1a-valid",
        "body-tampered",
        "id-tampered",
        "timestamp-tampered",
        "expired",
        "future",
        "rotation-old-secret",
        "rotation-new-secret",
        "rotation-neither-secret",
        "v1-signature-whpk-key",
        "garbage-beside-valid",
        "empty-signature-header",
    } <= names["webhooks"]
    assert {
        "record-valid",
        "webhook-valid",
        "unknown-key",
        "misrouted-recipient",
        "misrouted-delivery",
        "misrouted-message",
        "unknown-signing-key",
        "unsigned",
        "relabelled",
        "truncated",
    } <= names["records"]
    assert {
        "validation-failed",
        "sharing-refused",
        "unauthenticated",
        "insufficient-scope",
        "not-found",
        "idempotency-key-reused",
        "rate-limited",
    } <= names["problems"]
    kinds = {c["kind"]: c["valid"] for c in RECORDS["cases"] if c["valid"]}
    assert kinds == {"record": True, "webhook": True}


# -- the vectors agree with the broker -----------------------------------------------------------


@pytest.mark.parametrize("case", _cases(WEBHOOKS))
def test_webhook_case_is_what_the_broker_verifies(case: dict[str, Any]) -> None:
    """Valid when ``signing.verify`` accepts the delivery under any key the receiver holds;
    otherwise ``timestamp`` when it refused the timestamp, else ``signature``."""
    h = case["headers"]
    refusals = []
    for key in case["keys"]:
        try:
            signing.verify(
                key,
                h["webhook-id"],
                int(h["webhook-timestamp"]),
                case["body"].encode("utf-8"),
                h["webhook-signature"],
                now=case["now"],
                tolerance=case["tolerance"],
            )
        except AuthenticationFailed as e:
            refusals.append(e.detail)
            continue
        assert (case["valid"], case["error"]) == (True, None)
        return
    assert not case["valid"]
    if "webhook timestamp outside tolerance" in refusals:
        assert case["error"] == "timestamp"
    else:
        assert set(refusals) == {"no webhook signature matched"}
        assert case["error"] == "signature"


ERROR_KINDS: list[tuple[type[recipient.DeliveryDecryptError], str]] = [
    (recipient.UnknownKey, "unknown_key"),
    (recipient.Misrouted, "misrouted"),
    (recipient.NotSignedByBroker, "not_signed_by_broker"),
]


@pytest.mark.parametrize("case", _cases(RECORDS))
def test_record_case_is_what_the_broker_opens(case: dict[str, Any]) -> None:
    """A record through ``open_record`` with its ``isa_*`` headers, a webhook body through
    ``open_`` with its ids; an error is the kind of exception they raise."""
    keys = RECORDS["recipient_private_jwks"]["keys"]
    broker_keys = RECORDS["broker_delivery_signing_jwks"]
    ctx = case["context"]
    try:
        if case["kind"] == "record":
            opened = recipient.open_record(
                case["token"].encode("ascii"),
                [
                    ("isa_message_id", ctx["message_id"].encode()),
                    ("isa_delivery_id", ctx["delivery_id"].encode()),
                ],
                keys,
                broker_keys=broker_keys,
                recipient=RECORDS["recipient"],
            )
        else:
            opened = recipient.open_(
                case["token"],
                keys,
                broker_keys=broker_keys,
                recipient=RECORDS["recipient"],
                message_id=ctx["message_id"],
                delivery_id=ctx["delivery_id"],
            )
    except recipient.BrokerKeysUnavailable:
        pytest.fail("a JWK set given as a dict is never fetched again")
    except recipient.DeliveryDecryptError as e:
        kind = next((k for cls, k in ERROR_KINDS if isinstance(e, cls)), "malformed")
        assert (case["valid"], case["error"], case["event"]) == (False, kind, None), str(e)
        return
    assert (case["valid"], case["error"]) == (True, None)
    assert case["event"] == opened.event
    assert opened.event["id"] == ctx["message_id"]
    assert opened.event["isadeliveryid"] == ctx["delivery_id"]
    assert opened.event["isarecipient"] == RECORDS["recipient"]


@pytest.mark.parametrize("case", _cases(PROBLEMS))
def test_problem_expectation_derives_from_its_body(case: dict[str, Any]) -> None:
    """``expect`` is read from the problem document as README.md says: the RFC 9457 members,
    ``retry_after`` (also the Retry-After header), the ``errors[].pointer`` list and the
    first refusal rule as ``agreement@version#flow``."""
    body, expect = case["body"], case["expect"]
    assert case["headers"]["content-type"].startswith("application/problem+json")
    assert case["status"] == body["status"] == expect["status"]
    assert body["type"] == "https://isa-broker.example/problems/" + body["code"]
    assert (expect["code"], expect["title"], expect["detail"]) == (
        body["code"],
        body["title"],
        body["detail"],
    )
    assert expect["retry_after"] == body.get("retry_after")
    if "retry-after" in case["headers"] or expect["retry_after"] is not None:
        assert int(case["headers"]["retry-after"]) == expect["retry_after"]
    assert expect["fields"] == [e["pointer"] for e in body.get("errors", [])]
    rules = body.get("rules") or []
    if body["code"] == "sharing_refused" and rules:
        r = rules[0]
        assert expect["clause"] == f"{r['agreement']}@{r['version']}#{r['flow']}"
    else:
        assert expect["clause"] is None
    if case["status"] == 401:
        assert case["headers"]["www-authenticate"].startswith("Bearer")


# -- the generator -------------------------------------------------------------------------------


def test_the_generator_writes_the_same_cases(tmp_path: Path) -> None:
    """The generator runs on the broker's code as it is now, and its output has the committed
    cases (the JWE tokens differ each run: fresh ephemeral keys). The webhook cases are the
    same byte for byte."""
    out = subprocess.run(  # noqa: S603 - this interpreter, the repository's script
        [sys.executable, str(GENERATOR), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    for name, committed in (
        ("webhooks.json", WEBHOOKS),
        ("records.json", RECORDS),
        ("problems.json", PROBLEMS),
    ):
        fresh = json.loads((tmp_path / name).read_text(encoding="utf-8"))
        assert [c["name"] for c in fresh["cases"]] == [c["name"] for c in committed["cases"]]
        if name == "records.json":
            outcome = [(c["valid"], c["error"], c["event"]) for c in fresh["cases"]]
            assert outcome == [(c["valid"], c["error"], c["event"]) for c in committed["cases"]]
        if name == "problems.json":
            codes = [(c["status"], c["expect"]["code"]) for c in fresh["cases"]]
            assert codes == [(c["status"], c["expect"]["code"]) for c in committed["cases"]]
    fresh_webhooks = (tmp_path / "webhooks.json").read_bytes()
    assert fresh_webhooks == (TEST_VECTORS / "webhooks.json").read_bytes(), (
        "webhooks.json is out of date: run .venv/bin/python sdk/test-vectors/generate.py"
    )
