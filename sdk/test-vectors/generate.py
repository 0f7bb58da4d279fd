"""Writes the agency SDKs' shared test vectors (``webhooks.json``, ``records.json``,
``problems.json``; see README.md beside this file) from the broker's own code:

* webhook signatures by ``services.core.webhooks.signing`` (Standard Webhooks v1 and v1a);
* sealed records and webhook bodies by ``services.core.crypto.recipient`` (``seal``), the
  CloudEvent inside built as the router builds it (``services.router.dispatch``) from the
  decision of the broker's ISA engine on a synthetic release notice, and the attacks on them
  made the way an attacker would make them;
* problem documents answered by the real gateway (``services.gateway.app``, in process
  through ASGI) on a fresh store in a temporary folder.

Run it with the project's virtual environment from the repository root::

    .venv/bin/python sdk/test-vectors/generate.py            # rewrites the files here
    .venv/bin/python sdk/test-vectors/generate.py --out DIR  # writes them to DIR

``webhooks.json`` comes out byte for byte the same every run (its keys derive from fixed
labels); the JWE cases of ``records.json`` do not (fresh ephemeral keys, fresh broker and
agency keys), and neither do a few words of ``problems.json``. Every value is synthetic: the
people, the keys and the ids exist only here."""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import datetime as dt
import hashlib
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# the broker's settings come from the arguments below, never from this shell's environment
# (a developer's ISA_BROKER_DATABASE_URL must not receive the generator's clients)
for _name in [n for n in os.environ if n.startswith("ISA_BROKER_")]:
    del os.environ[_name]

import httpx  # noqa: E402
from joserfc import jwe  # noqa: E402
from joserfc.jwk import ECKey  # noqa: E402
from joserfc.registry import HeaderParameter  # noqa: E402

from services.core.clients import create_client  # noqa: E402
from services.core.crypto import recipient  # noqa: E402
from services.core.errors import AuthenticationFailed  # noqa: E402
from services.core.isa import IsaEngine, load_policies  # noqa: E402
from services.core.kafka.cloudevents import event_of, structured  # noqa: E402
from services.core.messages import MESSAGE_TYPES  # noqa: E402
from services.core.runtime import Runtime  # noqa: E402
from services.core.settings import Settings  # noqa: E402
from services.core.timeliness.lifecycle import event_extensions  # noqa: E402
from services.core.webhooks import signing  # noqa: E402
from services.gateway.app import create_app  # noqa: E402
from services.router.dispatch import agreement_refs  # noqa: E402

HERE = Path(__file__).resolve().parent
VERSION = 1

SENDER = "hmp-northgate"
RECIPIENT = "eastborough-vawg"
#: another agency that receives release notices (ISA-EB-020's victim-contact-scheme)
OTHER = "eastborough-vlo"

#: the business time of the vectors: the message's acceptance, the signatures' timestamp
ACCEPTED_AT = dt.datetime(2026, 1, 15, 9, 30, tzinfo=dt.UTC)
RELEASE_DATE = "2026-01-19"
TIMESTAMP = int(ACCEPTED_AT.timestamp())
TOLERANCE = signing.DEFAULT_TOLERANCE


def _id(label: str) -> str:
    """A fixed UUID for ``label``, so regenerating keeps the ids."""
    return str(
        uuid.uuid5(uuid.NAMESPACE_URL, "https://isa-broker.example/sdk-test-vectors/" + label)
    )


MESSAGE_ID = _id("message")
RECORD_DELIVERY = _id("delivery/eastborough-vawg/kafka")
WEBHOOK_DELIVERY = _id("delivery/eastborough-vawg/webhook")
OTHER_DELIVERY = _id("delivery/eastborough-vlo/kafka")
PERSON = "psn_" + hashlib.sha256(b"sdk-test-vectors person").hexdigest()[:32]


# -- the message -------------------------------------------------------------------------------


def example(message_type: str) -> dict[str, Any]:
    """The first example of ``message_type``'s schema (synthetic: its person is invented)."""
    extra: Any = MESSAGE_TYPES[message_type].model.model_config["json_schema_extra"]
    return copy.deepcopy(dict(extra["examples"][0]))


def release_notice(release_date: str = RELEASE_DATE) -> dict[str, Any]:
    """A valid synthetic release notice (the schema's example, whose person is invented)."""
    body = example("release-notice")
    body["release"]["date"] = release_date
    body["destination"]["address"] = {
        "line1": "9 Nowhere Lane",
        "town": "Eastborough",
        "postcode": "ZZ9 9ZZ",
    }
    return body


def cloud_event(engine: IsaEngine, party: str, delivery_id: str) -> bytes:
    """The structured CloudEvent the router sends ``party`` for the release notice: only the
    fields the agreements permit it, with the attributes ``Dispatcher.body`` sets (the
    delivery is not yet due an acknowledgement, nor traced)."""
    body = release_notice()
    decision = engine.decide(SENDER, "release-notice", ACCEPTED_AT, payload=body)
    permitted = decision.recipient(party)
    if permitted is None:
        raise SystemExit(f"the agreements no longer send release notices to {party}")
    message = {
        "id": MESSAGE_ID,
        "sender": SENDER,
        "message_type": "release-notice",
        "accepted_at": ACCEPTED_AT,
        "person": PERSON,
        "payload": body,
    }
    timeliness = {"notice_days": 3.6, "short_notice": False, "days_early": 0}
    return structured(
        event_of(message),
        # the projection's key order follows a set's: sorted, so the files are stable
        json.loads(json.dumps(permitted.project(body), sort_keys=True)),
        {
            "isarecipient": party,
            "isaagreements": agreement_refs(permitted),
            "isadeliveryid": delivery_id,
            **event_extensions({"lifecycle": "original", "version": 1, "timeliness": timeliness}),
        },
    )


# -- webhooks.json -----------------------------------------------------------------------------


def _seed(label: str) -> str:
    return base64.b64encode(
        hashlib.sha256(b"isa-broker sdk test vector " + label.encode()).digest()
    ).decode()


def webhook_cases(body: str) -> list[dict[str, Any]]:
    """Standard Webhooks cases, signed by ``signing.headers`` with keys derived from fixed
    labels (so the file is the same every run)."""
    old = signing.SECRET_PREFIX + _seed("whsec old")
    new = signing.SECRET_PREFIX + _seed("whsec new")
    stranger = signing.SECRET_PREFIX + _seed("whsec stranger")
    secret_key = signing.SECRET_KEY_PREFIX + _seed("whsk")
    public = signing.public_key(secret_key)
    raw = body.encode()
    msg_id = WEBHOOK_DELIVERY

    def signed(
        keys: list[str], msg: str = msg_id, ts: int = TIMESTAMP, content: bytes = raw
    ) -> dict[str, str]:
        return signing.headers(keys, msg, ts, content)

    v1 = signed([old])
    v1a = signed([secret_key])
    rotation = signed([new, old])
    unicode_body = body.replace('"given_name":"Alexis"', '"given_name":"Zoë-Łucja"')
    unicode_headers = signed([old], content=unicode_body.encode())
    v1_sig = v1["webhook-signature"].partition(",")[2]

    def case(
        name: str,
        description: str,
        keys: list[str],
        headers: Mapping[str, str],
        *,
        content: str = body,
        now: int = TIMESTAMP + 5,
    ) -> dict[str, Any]:
        return {
            "name": name,
            "description": description,
            "keys": keys,
            "headers": dict(headers),
            "body": content,
            "now": now,
            "tolerance": TOLERANCE,
        }

    cases = [
        case("v1-valid", "HMAC-SHA256 (v1) signature under the whsec_ secret held", [old], v1),
        case(
            "v1a-valid",
            "ed25519 (v1a) signature; the receiver holds the whpk_ public key",
            [public],
            v1a,
        ),
        case(
            "v1-valid-unicode-body",
            "v1 over a body with non-ASCII characters: sign and verify the exact UTF-8 bytes",
            [old],
            unicode_headers,
            content=unicode_body,
        ),
        case(
            "body-tampered",
            "one character of the body changed after signing",
            [old],
            v1,
            content=body.replace('"Alexis"', '"Alexia"'),
        ),
        case(
            "v1a-body-tampered",
            "v1a signature, body changed after signing",
            [public],
            v1a,
            content=body.replace('"Alexis"', '"Alexia"'),
        ),
        case(
            "id-tampered",
            "webhook-id changed after signing (the id is signed)",
            [old],
            {**v1, "webhook-id": _id("delivery/replayed")},
        ),
        case(
            "timestamp-tampered",
            "webhook-timestamp moved by one second after signing, still within tolerance",
            [old],
            {**v1, "webhook-timestamp": str(TIMESTAMP + 1)},
        ),
        case(
            "expired",
            "the receiver's clock is an hour after the timestamp",
            [old],
            v1,
            now=TIMESTAMP + 3600,
        ),
        case(
            "future",
            "the timestamp is ten minutes ahead of the receiver's clock",
            [old],
            v1,
            now=TIMESTAMP - 600,
        ),
        case(
            "at-tolerance",
            "exactly `tolerance` seconds old: still accepted (refused only beyond it)",
            [old],
            v1,
            now=TIMESTAMP + TOLERANCE,
        ),
        case(
            "past-tolerance",
            "one second beyond the tolerance",
            [old],
            v1,
            now=TIMESTAMP + TOLERANCE + 1,
        ),
        case(
            "expired-and-unsigned",
            "the timestamp check comes first: an expired delivery with no matching signature "
            "is a timestamp error",
            [stranger],
            v1,
            now=TIMESTAMP + 3600,
        ),
        case(
            "rotation-old-secret",
            "during a secret rotation the delivery carries two signatures (new, old); the "
            "receiver still holds only the old secret",
            [old],
            rotation,
        ),
        case(
            "rotation-new-secret",
            "two signatures (new, old); the receiver holds only the new secret",
            [new],
            rotation,
        ),
        case(
            "rotation-neither-secret",
            "two signatures; the receiver holds neither secret",
            [stranger],
            rotation,
        ),
        case(
            "several-keys-held",
            "the receiver holds several keys (a stranger's secret, the whpk_ key, the old "
            "secret): valid when any of them verifies a signature",
            [stranger, public, old],
            v1,
        ),
        case(
            "v1-signature-whpk-key",
            "a v1 signature, but the receiver holds only a whpk_ key: v1 entries are ignored "
            "by a v1a key",
            [public],
            v1,
        ),
        case(
            "v1a-signature-whsec-key",
            "a v1a signature, but the receiver holds only a whsec_ secret",
            [old],
            v1a,
        ),
        case(
            "garbage-beside-valid",
            "malformed entries (no comma, unknown version, bad base64, the MAC labelled v1a, "
            "an empty entry between two spaces, a lone comma) beside a valid v1 signature: "
            "ignored, the valid one verifies",
            [old],
            {
                **v1,
                "webhook-signature": f"garbage v2,abc v1,!!!notbase64 v1a,{v1_sig}  , "
                + v1["webhook-signature"],
            },
        ),
        case(
            "v1a-garbage-beside-valid",
            "malformed v1a entries beside a valid v1a signature",
            [public],
            {**v1a, "webhook-signature": "v1a,%%% v1a,AAAA v1a " + v1a["webhook-signature"]},
        ),
        case(
            "empty-signature-header",
            "webhook-signature is empty",
            [old],
            {**v1, "webhook-signature": ""},
        ),
        case(
            "signature-of-other-scheme-prefix",
            "the v1 MAC sent as v1a: the version must match the key's scheme",
            [old, public],
            {**v1, "webhook-signature": "v1a," + v1_sig},
        ),
    ]
    for c in cases:
        c["valid"], c["error"] = webhook_outcome(c)
    return cases


def webhook_outcome(case: Mapping[str, Any]) -> tuple[bool, str | None]:
    """What ``signing.verify`` says of a case: valid when any key held verifies; otherwise
    ``timestamp`` (checked first) or ``signature``. The SDKs reproduce exactly this."""
    headers = case["headers"]
    errors = []
    for key in case["keys"]:
        try:
            signing.verify(
                key,
                headers["webhook-id"],
                int(headers["webhook-timestamp"]),
                case["body"].encode(),
                headers["webhook-signature"],
                case["now"],
                case["tolerance"],
            )
        except AuthenticationFailed as e:
            errors.append("timestamp" if "timestamp" in e.detail else "signature")
            continue
        return True, None
    return False, "timestamp" if "timestamp" in errors else "signature"


# -- records.json ------------------------------------------------------------------------------

_JWE_REGISTRY = jwe.JWERegistry(
    header_registry={
        name: HeaderParameter(name, "str", True)
        for name in (
            recipient.H_MESSAGE,
            recipient.H_DELIVERY,
            recipient.H_RECIPIENT,
            recipient.H_AGREEMENTS,
        )
    },
    algorithms=[recipient.ALG, recipient.ENC],
)


def encrypt(plaintext: bytes, to: Mapping[str, Any], binding: recipient.Binding, cty: str) -> str:
    """A compact JWE of ``plaintext`` to the public key ``to`` with the broker's header
    layout, made by someone other than the broker (who holds only public keys)."""
    protected = {
        "alg": recipient.ALG,
        "enc": recipient.ENC,
        "kid": to["kid"],
        "typ": recipient.TYP,
        "cty": cty,
        **binding.header(),
    }
    key = ECKey.import_key({k: to[k] for k in ("kty", "crv", "x", "y")})
    return jwe.encrypt_compact(protected, plaintext, key, registry=_JWE_REGISTRY)


ERRORS: list[tuple[type[Exception], str]] = [
    (recipient.UnknownKey, "unknown_key"),
    (recipient.Misrouted, "misrouted"),
    (recipient.NotSignedByBroker, "not_signed_by_broker"),
    (recipient.DeliveryDecryptError, "malformed"),
]


def record_outcome(
    case: Mapping[str, Any],
    private_jwks: Mapping[str, Any],
    broker_jwks: Mapping[str, Any],
    who: str,
) -> tuple[bool, str | None, dict[str, Any] | None]:
    """What ``recipient.open_record`` (a record) or ``recipient.open_`` (a webhook body) says
    of a case, its exception mapped to the vectors' error kind."""
    token, context = case["token"], case["context"]
    try:
        if case["kind"] == "record":
            opened = recipient.open_record(
                token.encode(),
                [
                    (recipient.RECORD_MESSAGE_HEADER, context["message_id"].encode()),
                    (recipient.RECORD_DELIVERY_HEADER, context["delivery_id"].encode()),
                ],
                private_jwks["keys"],
                broker_keys=broker_jwks,
                recipient=who,
            )
        else:
            opened = recipient.open_(
                token,
                private_jwks["keys"],
                broker_keys=broker_jwks,
                recipient=who,
                message_id=context["message_id"],
                delivery_id=context["delivery_id"],
            )
    except recipient.BrokerKeysUnavailable:
        raise  # never with a JWK set given as a dict: a bug in the vectors
    except recipient.DeliveryDecryptError as e:
        return False, next(kind for cls, kind in ERRORS if isinstance(e, cls)), None
    return True, None, opened.event


def record_cases(
    engine: IsaEngine, broker_key: ECKey, broker_jwks: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The recipient's private JWK set and the cases: genuine deliveries sealed by
    ``recipient.seal`` with the broker's delivery-signing key, and forgeries."""
    # the agency holds its current key and the previous one (records sealed before it
    # registered the current key are still on its topic); an older key it no longer holds
    private, public = recipient.generate_key(kid="eastborough-vawg-2026-01")
    previous_private, previous_public = recipient.generate_key(kid="eastborough-vawg-2025-07")
    _, retired_public = recipient.generate_key(kid="eastborough-vawg-2025-01")
    other_private, other_public = recipient.generate_key(kid="eastborough-vlo-2026-01")

    record_event = cloud_event(engine, RECIPIENT, RECORD_DELIVERY)
    webhook_event = cloud_event(engine, RECIPIENT, WEBHOOK_DELIVERY)
    other_event = cloud_event(engine, OTHER, OTHER_DELIVERY)
    agreements = json.loads(record_event)["isaagreements"]
    record_binding = recipient.Binding(MESSAGE_ID, RECORD_DELIVERY, RECIPIENT, agreements)
    webhook_binding = recipient.Binding(MESSAGE_ID, WEBHOOK_DELIVERY, RECIPIENT, agreements)
    other_binding = recipient.Binding(
        MESSAGE_ID, OTHER_DELIVERY, OTHER, json.loads(other_event)["isaagreements"]
    )

    def seal(
        body: bytes, to: Mapping[str, Any], binding: recipient.Binding, key: ECKey = broker_key
    ) -> str:
        return recipient.seal(body, to, binding, signing_key=key).decode()

    record = seal(record_event, public, record_binding)
    record_ctx = {"message_id": MESSAGE_ID, "delivery_id": RECORD_DELIVERY}
    webhook_ctx = {"message_id": MESSAGE_ID, "delivery_id": WEBHOOK_DELIVERY}

    # an impostor's signing keys: a kid the broker does not publish, and the broker's kid
    impostor = ECKey.generate_key("P-256", {"kid": "isa-broker-delivery-impostor"}, private=True)
    same_kid = ECKey.generate_key("P-256", {"kid": str(broker_key.kid)}, private=True)

    # the other agency opens the record it got, then re-encrypts the broker's signed event to
    # our key with a header naming us (recipient.py's threat model)
    theirs = recipient.open_(
        seal(other_event, other_public, other_binding),
        [other_private],
        broker_keys=broker_jwks,
        recipient=OTHER,
    )
    relabelled_binding = recipient.Binding(
        MESSAGE_ID, OTHER_DELIVERY, RECIPIENT, other_binding.agreements
    )
    relabelled = encrypt(theirs.signed, public, relabelled_binding, recipient.SIGNED_TYP)

    parts = record.split(".")
    garbled_ct = parts[3][:10] + ("A" if parts[3][10] != "A" else "B") + parts[3][11:]

    def case(
        name: str, description: str, kind: str, token: str, context: Mapping[str, str]
    ) -> dict[str, Any]:
        return {
            "name": name,
            "description": description,
            "kind": kind,
            "token": token,
            "context": dict(context),
        }

    cases = [
        case(
            "record-valid",
            "a record of the agency topic as the broker seals it",
            "record",
            record,
            record_ctx,
        ),
        case(
            "webhook-valid",
            "an encrypted webhook body (subscription with encrypt): context.delivery_id is "
            "the webhook-id header",
            "webhook",
            seal(webhook_event, public, webhook_binding),
            webhook_ctx,
        ),
        case(
            "record-previous-key",
            "encrypted to the agency's previous key, which it still holds (both private keys "
            "are in recipient_private_jwks; the token's kid picks one)",
            "record",
            seal(record_event, previous_public, record_binding),
            record_ctx,
        ),
        case(
            "unknown-key",
            "encrypted to an older key of the agency's that it no longer holds",
            "record",
            seal(record_event, retired_public, record_binding),
            record_ctx,
        ),
        case(
            "misrouted-recipient",
            "a record for another agency, encrypted to that agency's key and naming it",
            "record",
            seal(other_event, other_public, other_binding),
            {"message_id": MESSAGE_ID, "delivery_id": OTHER_DELIVERY},
        ),
        case(
            "misrouted-delivery",
            "a genuine record whose isa_delivery_id header names another delivery",
            "record",
            record,
            {"message_id": MESSAGE_ID, "delivery_id": WEBHOOK_DELIVERY},
        ),
        case(
            "misrouted-message",
            "a genuine record whose isa_message_id header names another message",
            "record",
            record,
            {"message_id": _id("message/other"), "delivery_id": RECORD_DELIVERY},
        ),
        case(
            "webhook-misrouted-delivery",
            "a genuine encrypted webhook body arriving with another webhook-id (a replay "
            "under another delivery)",
            "webhook",
            seal(webhook_event, public, webhook_binding),
            {"message_id": MESSAGE_ID, "delivery_id": RECORD_DELIVERY},
        ),
        case(
            "unknown-signing-key",
            "signed with a key id the broker does not publish",
            "record",
            seal(record_event, public, record_binding, impostor),
            record_ctx,
        ),
        case(
            "wrong-signing-key",
            "signed with another key that claims the broker's key id: the signature does not "
            "verify",
            "record",
            seal(record_event, public, record_binding, same_kid),
            record_ctx,
        ),
        case(
            "unsigned",
            "the CloudEvent encrypted to the agency without the broker's signature inside",
            "record",
            encrypt(record_event, public, record_binding, recipient.CTY),
            record_ctx,
        ),
        case(
            "relabelled",
            "another agency decrypted a record the broker signed for it and encrypted the "
            "signed event again to this agency's key, with a header naming this agency",
            "record",
            relabelled,
            {"message_id": MESSAGE_ID, "delivery_id": OTHER_DELIVERY},
        ),
        case(
            "truncated",
            "the last part of the compact JWE cut off (four parts)",
            "record",
            record.rsplit(".", 1)[0],
            record_ctx,
        ),
        case(
            "garbled-ciphertext",
            "one character of the ciphertext changed: it does not decrypt",
            "record",
            ".".join([*parts[:3], garbled_ct, parts[4]]),
            record_ctx,
        ),
        case(
            "garbled-header",
            "the protected header is not base64url JSON",
            "record",
            "!!!." + record.split(".", 1)[1],
            record_ctx,
        ),
        case(
            "not-a-jwe",
            "the plain CloudEvent JSON where a compact JWE was expected",
            "webhook",
            webhook_event.decode(),
            webhook_ctx,
        ),
    ]
    private_jwks = {"keys": [private, previous_private]}
    for c in cases:
        c["valid"], c["error"], c["event"] = record_outcome(c, private_jwks, broker_jwks, RECIPIENT)
    return private_jwks, cases


# -- problems.json -----------------------------------------------------------------------------

PROBLEM_HEADERS = ("content-type", "retry-after", "www-authenticate")


def problem_expect(body: Mapping[str, Any]) -> dict[str, Any]:
    """What an SDK extracts from a problem document (README.md says from where)."""
    rules = body.get("rules") or []
    clause = None
    if body.get("code") == "sharing_refused" and rules:
        first = rules[0]
        clause = f"{first['agreement']}@{first['version']}#{first['flow']}"
    retry_after = body.get("retry_after")
    return {
        "code": body["code"],
        "status": body["status"],
        "title": body["title"],
        "detail": body["detail"],
        "retry_after": int(retry_after) if retry_after is not None else None,
        "fields": [e["pointer"] for e in body.get("errors") or []],
        "clause": clause,
    }


def _settings(folder: Path, **overrides: Any) -> Settings:
    return Settings(
        mode="dev",
        data_dir=folder,
        host="127.0.0.1",
        port=8000,
        public_url="http://127.0.0.1:8000",
        **overrides,
    )


async def _gateway(settings: Settings) -> tuple[Runtime, httpx.AsyncClient]:
    # the gateway's answers below never reach Kafka (an accepted message waits in the
    # outbox, whose relay is not started): no broker is needed
    runtime = await Runtime.create(settings, "127.0.0.1:9", embedded=True)
    transport = httpx.ASGITransport(app=create_app(runtime))
    return runtime, httpx.AsyncClient(transport=transport, base_url=settings.public_url)


async def _bearer(
    runtime: Runtime, http: httpx.AsyncClient, party: str, scopes: list[str] | None = None
) -> dict[str, str]:
    creds = await create_client(runtime, party, scopes=scopes)
    r = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(creds["client_id"], creds["client_secret"]),
    )
    r.raise_for_status()
    return {"Authorization": "Bearer " + r.json()["access_token"]}


async def gateway_vectors(folder: Path) -> tuple[list[dict[str, Any]], ECKey, dict[str, Any]]:
    """The problem cases answered by the gateway, and its delivery-signing key with the JWK
    set it serves at ``/.well-known/delivery-signing-keys.json``."""
    future = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    runtime, http = await _gateway(_settings(folder / "gateway"))
    answers: list[tuple[str, str, httpx.Response]] = []
    try:
        prison = await _bearer(runtime, http, SENDER)
        vawg = await _bearer(runtime, http, RECIPIENT)
        invalid = release_notice(future)
        del invalid["release"]["date"]
        invalid["person"]["date_of_birth"] = "01/01/1990"
        answers.append(
            (
                "validation-failed",
                "a release notice failing schema validation: one field missing, one malformed",
                await http.post("/v1/messages/release-notice", json=invalid, headers=prison),
            )
        )
        answers.append(
            (
                "malformed-json",
                "a body that is not well-formed JSON",
                await http.post(
                    "/v1/messages/release-notice",
                    content=b'{"person": {"given_name": "Alexis",',
                    headers={**prison, "Content-Type": "application/json"},
                ),
            )
        )
        answers.append(
            (
                "sharing-refused",
                "a release notice for a purpose only an expired agreement covers: refused by the "
                "agreements, naming the clause (agreement, version, flow)",
                await http.post(
                    "/v1/messages/release-notice?purpose=youth-transition",
                    json=release_notice(future),
                    headers=prison,
                ),
            )
        )
        recall = example("licence-recall")
        answers.append(
            (
                "sharing-refused-without-rules",
                "a licence recall from a party no agreement lets send it (its client holds the "
                "scope): refused with no rules, so no clause",
                await http.post(
                    "/v1/messages/licence-recall",
                    json=recall,
                    headers=await _bearer(runtime, http, SENDER, ["publish:licence-recall"]),
                ),
            )
        )
        answers.append(
            (
                "unauthenticated",
                "a Bearer token that is not one the broker issued",
                await http.post(
                    "/v1/messages/release-notice",
                    json=release_notice(future),
                    headers={"Authorization": "Bearer not-a-token"},
                ),
            )
        )
        answers.append(
            (
                "insufficient-scope",
                "a recipient's token used to publish a release notice",
                await http.post(
                    "/v1/messages/release-notice", json=release_notice(future), headers=vawg
                ),
            )
        )
        answers.append(
            (
                "not-found",
                "a message that does not exist",
                await http.get(f"/v1/messages/{_id('message/unknown')}", headers=prison),
            )
        )
        answers.append(
            (
                "unknown-message-type",
                "publishing a message type the broker does not know",
                await http.post("/v1/messages/parole-notice", json={}, headers=prison),
            )
        )
        keyed = {**prison, "Idempotency-Key": "sdk-vectors-1"}
        first = await http.post(
            "/v1/messages/release-notice", json=release_notice(future), headers=keyed
        )
        if first.status_code != 202:
            raise SystemExit(f"the first request with the Idempotency-Key failed: {first.text}")
        other_date = (dt.date.today() + dt.timedelta(days=31)).isoformat()
        answers.append(
            (
                "idempotency-key-reused",
                "an Idempotency-Key used again with another body",
                await http.post(
                    "/v1/messages/release-notice", json=release_notice(other_date), headers=keyed
                ),
            )
        )
        broker_key = runtime.keys.delivery_signing_key(runtime.clock())
        jwks = (await http.get(recipient.BROKER_KEYS_PATH)).raise_for_status().json()
    finally:
        await http.aclose()
        await runtime.aclose()

    # a gateway allowing 10 requests a minute per client (bursts of one)
    runtime, http = await _gateway(_settings(folder / "limited", rate_limit_per_minute=10))
    try:
        prison = await _bearer(runtime, http, SENDER)
        for _ in range(5):
            r = await http.get("/v1/messages", headers=prison)
            if r.status_code == 429:
                break
        answers.append(("rate-limited", "more requests than the client's rate limit", r))
    finally:
        await http.aclose()
        await runtime.aclose()

    cases = []
    for name, description, response in answers:
        if not response.headers.get("content-type", "").startswith("application/problem+json"):
            raise SystemExit(
                f"{name}: not a problem document: {response.status_code} {response.text}"
            )
        body = response.json()
        cases.append(
            {
                "name": name,
                "description": description,
                "status": response.status_code,
                "headers": {
                    h: response.headers[h] for h in PROBLEM_HEADERS if h in response.headers
                },
                "body": body,
                "expect": problem_expect(body),
            }
        )
    return cases, broker_key, jwks


# -- the files ---------------------------------------------------------------------------------


def _write(path: Path, value: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


async def generate(out: Path) -> dict[str, int]:
    """Write the three files to ``out``; return the number of cases in each."""
    out.mkdir(parents=True, exist_ok=True)
    engine = IsaEngine(load_policies(REPO / "isa_policies", REPO / "schemas"))
    with tempfile.TemporaryDirectory(prefix="isa-sdk-vectors-") as folder:
        problems, broker_key, broker_jwks = await gateway_vectors(Path(folder))
    webhook_body = cloud_event(engine, RECIPIENT, WEBHOOK_DELIVERY).decode()
    webhooks = webhook_cases(webhook_body)
    private_jwks, records = record_cases(engine, broker_key, broker_jwks)
    _write(out / "webhooks.json", {"version": VERSION, "cases": webhooks})
    _write(
        out / "records.json",
        {
            "version": VERSION,
            "recipient": RECIPIENT,
            "recipient_private_jwks": private_jwks,
            "broker_delivery_signing_jwks": broker_jwks,
            "cases": records,
        },
    )
    _write(out / "problems.json", {"version": VERSION, "cases": problems})
    return {
        "webhooks.json": len(webhooks),
        "records.json": len(records),
        "problems.json": len(problems),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=HERE, help="the folder to write (default: here)"
    )
    args = parser.parse_args(argv)
    counts = asyncio.run(generate(args.out))
    for name, n in counts.items():
        print(f"{args.out / name}: {n} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
