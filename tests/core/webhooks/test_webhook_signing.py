"""Standard Webhooks signatures, cross-checked with the independent ``standardwebhooks``
package (v1) and with the reference libraries' known answers (v1 and v1a)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.core.crypto.keys import new_webhook_secret
from services.core.errors import AuthenticationFailed
from services.core.webhooks.signing import (
    SigningKeyInvalid,
    WebhookBodyInvalid,
    active_keys,
    headers,
    new_signing_key,
    public_key,
    scheme_of,
    sign,
    verify,
)

BODY = b'{"specversion":"1.0","id":"msg_1","data":{"release":{"date":"2026-12-01"}}}'
MSG_ID = "msg_2f1c0b7e"


@pytest.fixture
def secret() -> str:
    return new_webhook_secret()


def _now() -> int:
    return int(time.time())


def test_secret_format(secret: str) -> None:
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert new_webhook_secret() != secret


def test_signature_is_hmac_sha256_of_id_timestamp_body(secret: str) -> None:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{MSG_ID}.1700000000.".encode() + BODY, hashlib.sha256).digest()
    assert sign(secret, MSG_ID, 1_700_000_000, BODY) == "v1," + base64.b64encode(mac).decode()


def test_prefix_is_optional(secret: str) -> None:
    bare = secret.removeprefix("whsec_")
    assert sign(bare, MSG_ID, 1, BODY) == sign(secret, MSG_ID, 1, BODY)


def test_sign_verify_round_trip(secret: str) -> None:
    ts = _now()
    verify(secret, MSG_ID, ts, BODY, sign(secret, MSG_ID, ts, BODY), now=ts)


def test_verify_rejects_wrong_secret(secret: str) -> None:
    ts = _now()
    header = sign(new_webhook_secret(), MSG_ID, ts, BODY)
    with pytest.raises(AuthenticationFailed, match="no webhook signature matched"):
        verify(secret, MSG_ID, ts, BODY, header, now=ts)


@pytest.mark.parametrize(
    ("msg_id", "ts_delta", "body"),
    [
        pytest.param(MSG_ID, 0, BODY.replace(b"2026-12-01", b"2026-12-02"), id="tampered-body"),
        pytest.param(MSG_ID, 0, BODY + b" ", id="appended-byte"),
        pytest.param("msg_other", 0, BODY, id="other-message-id"),
        pytest.param(MSG_ID, 1, BODY, id="other-timestamp"),
    ],
)
def test_verify_rejects_anything_tampered(
    secret: str, msg_id: str, ts_delta: int, body: bytes
) -> None:
    ts = _now()
    header = sign(secret, MSG_ID, ts, BODY)
    with pytest.raises(AuthenticationFailed, match="no webhook signature matched"):
        verify(secret, msg_id, ts + ts_delta, body, header, now=ts)


@pytest.mark.parametrize("skew", [301, -301, 3600, -86_400])
def test_verify_rejects_timestamps_outside_tolerance(secret: str, skew: int) -> None:
    now = _now()
    ts = now - skew
    header = sign(secret, MSG_ID, ts, BODY)
    with pytest.raises(AuthenticationFailed, match="timestamp outside tolerance"):
        verify(secret, MSG_ID, ts, BODY, header, now=now)


@pytest.mark.parametrize("skew", [300, -300, 0])
def test_verify_accepts_the_tolerance_boundary(secret: str, skew: int) -> None:
    now = _now()
    ts = now - skew
    verify(secret, MSG_ID, ts, BODY, sign(secret, MSG_ID, ts, BODY), now=now)


def test_custom_tolerance(secret: str) -> None:
    now = _now()
    ts = now - 20
    header = sign(secret, MSG_ID, ts, BODY)
    verify(secret, MSG_ID, ts, BODY, header, now=now, tolerance=20)
    with pytest.raises(AuthenticationFailed):
        verify(secret, MSG_ID, ts, BODY, header, now=now, tolerance=19)


def test_verify_rejects_other_scheme_versions(secret: str) -> None:
    ts = _now()
    v1 = sign(secret, MSG_ID, ts, BODY)
    for header in (v1.replace("v1,", "v2,", 1), v1.removeprefix("v1,"), "", "v1,"):
        with pytest.raises(AuthenticationFailed):
            verify(secret, MSG_ID, ts, BODY, header, now=ts)


def test_headers_carry_one_signature_per_secret(secret: str) -> None:
    old, new = secret, new_webhook_secret()
    ts = _now()
    h = headers([old, new], MSG_ID, ts, BODY)
    assert h["webhook-id"] == MSG_ID
    assert h["webhook-timestamp"] == str(ts)
    assert h["webhook-signature"].split(" ") == [
        sign(old, MSG_ID, ts, BODY),
        sign(new, MSG_ID, ts, BODY),
    ]
    # During rotation the receiver may hold either secret.
    for s in (old, new):
        verify(s, MSG_ID, ts, BODY, h["webhook-signature"], now=ts)
    with pytest.raises(AuthenticationFailed):
        verify(new_webhook_secret(), MSG_ID, ts, BODY, h["webhook-signature"], now=ts)


# --- the independent implementation -----------------------------------------------------


def test_standardwebhooks_accepts_our_signature(secret: str) -> None:
    h = headers([secret], MSG_ID, _now(), BODY)
    assert Webhook(secret).verify(BODY, h) == {
        "specversion": "1.0",
        "id": "msg_1",
        "data": {"release": {"date": "2026-12-01"}},
    }


def test_standardwebhooks_accepts_each_secret_of_a_rotation(secret: str) -> None:
    old, new = secret, new_webhook_secret()
    h = headers([old, new], MSG_ID, _now(), BODY)
    assert " " in h["webhook-signature"]
    for s in (old, new):
        Webhook(s).verify(BODY, h, json_parse=False)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(new_webhook_secret()).verify(BODY, h)


def test_standardwebhooks_rejects_a_tampered_body(secret: str) -> None:
    h = headers([secret], MSG_ID, _now(), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"msg_1", b"msg_2"), h)


def test_standardwebhooks_rejects_an_old_timestamp(secret: str) -> None:
    h = headers([secret], MSG_ID, _now() - 600, BODY)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(BODY, h)


def test_we_accept_standardwebhooks_signatures(secret: str) -> None:
    ts = _now()
    theirs = Webhook(secret).sign(MSG_ID, dt.datetime.fromtimestamp(ts, tz=dt.UTC), BODY.decode())
    assert theirs == sign(secret, MSG_ID, ts, BODY)
    verify(secret, MSG_ID, ts, BODY, theirs, now=ts)


def test_cross_check_with_the_library_in_both_directions(secret: str) -> None:
    """Ours -> library: ``headers()`` (with a v1a signature beside, which the library skips)
    verifies with ``Webhook.verify``. Library -> ours: headers built from ``Webhook.sign``
    verify with our ``verify()``, alone and beside a rotation's other signature."""
    ts = _now()
    ours = headers([new_signing_key("v1a"), secret], MSG_ID, ts, BODY)
    Webhook(secret).verify(BODY, ours, json_parse=False)
    Webhook(secret.removeprefix("whsec_")).verify(BODY, ours, json_parse=False)

    library = Webhook(secret)
    when = dt.datetime.fromtimestamp(ts, tz=dt.UTC)
    theirs = {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(ts),
        "webhook-signature": library.sign(MSG_ID, when, BODY.decode()),
    }
    verify(secret, MSG_ID, ts, BODY, theirs["webhook-signature"], now=ts)
    other = new_webhook_secret()
    rotation = Webhook(other).sign(MSG_ID, when, BODY.decode()) + " " + theirs["webhook-signature"]
    for key in (secret, other):
        verify(key, MSG_ID, ts, BODY, rotation, now=ts)
    with pytest.raises(AuthenticationFailed, match="no webhook signature matched"):
        verify(new_webhook_secret(), MSG_ID, ts, BODY, rotation, now=ts)


def test_verify_runs_on_the_given_clock_not_the_wall_clock(secret: str) -> None:
    """The library's own verify reads the wall clock; ours takes ``now``."""
    ts = 1_000_000_000
    verify(secret, MSG_ID, ts, BODY, sign(secret, MSG_ID, ts, BODY), now=ts + 300)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(BODY, headers([secret], MSG_ID, ts, BODY))


def test_malformed_entries_beside_a_good_signature_are_skipped(secret: str) -> None:
    """Entries the library's verify would crash on (no comma, bad padding) are no match."""
    ts = _now()
    good = sign(secret, MSG_ID, ts, BODY)
    for junk in ("v1a", "v1,abc", "v1,a,b", "v1,", ","):
        verify(secret, MSG_ID, ts, BODY, f"{junk} {good}", now=ts)
        with pytest.raises(AuthenticationFailed, match="no webhook signature matched"):
            verify(secret, MSG_ID, ts, BODY, junk, now=ts)


def test_a_v1_body_must_be_utf8(secret: str, v1a_key: str) -> None:
    ts = _now()
    body = b"\xff\xfe not text"
    with pytest.raises(WebhookBodyInvalid, match="UTF-8"):
        sign(secret, MSG_ID, ts, body)
    forged = "v1," + base64.b64encode(b"\0" * 32).decode()
    with pytest.raises(AuthenticationFailed, match="no webhook signature matched"):
        verify(secret, MSG_ID, ts, body, forged, now=ts)
    # v1a signs bytes: no such limit
    verify(public_key(v1a_key), MSG_ID, ts, body, sign(v1a_key, MSG_ID, ts, body), now=ts)


def test_a_secret_the_library_would_read_leniently_is_refused(secret: str) -> None:
    """Given a string, ``Webhook`` drops characters outside base64; we refuse the key."""
    mangled = secret + "!"
    Webhook(mangled)  # the library takes it
    with pytest.raises(SigningKeyInvalid, match="not valid base64"):
        sign(mangled, MSG_ID, 1, BODY)
    with pytest.raises(SigningKeyInvalid, match="not valid base64"):
        verify(mangled, MSG_ID, 1, BODY, sign(secret, MSG_ID, 1, BODY), now=1)


# --- known answers ------------------------------------------------------------------------

#: the reference libraries' test vector (standard-webhooks libraries/*/ tests)
KA_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
KA_TIMESTAMP = 1614265330
KA_BODY = b'{"test": 2432232314}'


def test_v1_known_answer_matches_standardwebhooks() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105 - a published test vector
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(secret, KA_MSG_ID, KA_TIMESTAMP, KA_BODY) == expected
    theirs = Webhook(secret).sign(
        KA_MSG_ID, dt.datetime.fromtimestamp(KA_TIMESTAMP, tz=dt.UTC), KA_BODY.decode()
    )
    assert theirs == expected


def test_v1a_known_answer_of_the_reference_go_library() -> None:
    """libraries/go/webhook_asymmetric_test.go TestAsymmetricWebhookSign: the whsk_ key is
    the base64 ed25519 seed."""
    key = "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk="
    expected = (
        "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mk"
        "ATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag=="
    )
    assert sign(key, KA_MSG_ID, KA_TIMESTAMP, KA_BODY) == expected
    verify(public_key(key), KA_MSG_ID, KA_TIMESTAMP, KA_BODY, expected, now=KA_TIMESTAMP)


# --- v1a (ed25519) ------------------------------------------------------------------------


@pytest.fixture
def v1a_key() -> str:
    return new_signing_key("v1a")


def test_v1a_key_formats(v1a_key: str) -> None:
    assert v1a_key.startswith("whsk_")
    assert len(base64.b64decode(v1a_key.removeprefix("whsk_"))) == 32  # the seed
    pk = public_key(v1a_key)
    assert pk.startswith("whpk_") and len(base64.b64decode(pk.removeprefix("whpk_"))) == 32
    assert public_key(v1a_key) == pk  # deterministic
    assert new_signing_key("v1a") != v1a_key
    assert scheme_of(v1a_key) == scheme_of(pk) == "v1a"
    assert new_signing_key("v1").startswith("whsec_")
    assert scheme_of(new_signing_key("v1")) == "v1"


def test_v1a_sign_verify_round_trip_with_the_public_key(v1a_key: str) -> None:
    ts = _now()
    signature = sign(v1a_key, MSG_ID, ts, BODY)
    version, _, encoded = signature.partition(",")
    assert version == "v1a" and len(base64.b64decode(encoded)) == 64
    verify(public_key(v1a_key), MSG_ID, ts, BODY, signature, now=ts)


@pytest.mark.parametrize(
    ("msg_id", "ts_delta", "body"),
    [
        pytest.param(MSG_ID, 0, BODY.replace(b"2026-12-01", b"2026-12-02"), id="tampered-body"),
        pytest.param("msg_other", 0, BODY, id="other-message-id"),
        pytest.param(MSG_ID, 1, BODY, id="other-timestamp"),
    ],
)
def test_v1a_verify_rejects_anything_tampered(
    v1a_key: str, msg_id: str, ts_delta: int, body: bytes
) -> None:
    ts = _now()
    header = sign(v1a_key, MSG_ID, ts, BODY)
    with pytest.raises(AuthenticationFailed, match="no webhook signature matched"):
        verify(public_key(v1a_key), msg_id, ts + ts_delta, body, header, now=ts)


def test_v1a_verify_rejects_a_signature_by_another_key(v1a_key: str) -> None:
    ts = _now()
    header = sign(new_signing_key("v1a"), MSG_ID, ts, BODY)
    with pytest.raises(AuthenticationFailed, match="no webhook signature matched"):
        verify(public_key(v1a_key), MSG_ID, ts, BODY, header, now=ts)


def test_v1_signature_presented_as_v1a_fails(v1a_key: str, secret: str) -> None:
    ts = _now()
    v1 = sign(secret, MSG_ID, ts, BODY)
    as_v1a = "v1a," + v1.removeprefix("v1,")
    for header in (v1, as_v1a, "v1a,", "v1a,not-base64!", "v1a"):
        with pytest.raises(AuthenticationFailed):
            verify(public_key(v1a_key), MSG_ID, ts, BODY, header, now=ts)


def test_v1a_signature_presented_as_v1_fails(v1a_key: str, secret: str) -> None:
    ts = _now()
    as_v1 = "v1," + sign(v1a_key, MSG_ID, ts, BODY).removeprefix("v1a,")
    with pytest.raises(AuthenticationFailed):
        verify(secret, MSG_ID, ts, BODY, as_v1, now=ts)


@pytest.mark.parametrize("skew", [301, -301, 86_400])
def test_v1a_replay_outside_tolerance_is_refused(v1a_key: str, skew: int) -> None:
    now = _now()
    ts = now - skew
    header = sign(v1a_key, MSG_ID, ts, BODY)
    with pytest.raises(AuthenticationFailed, match="timestamp outside tolerance"):
        verify(public_key(v1a_key), MSG_ID, ts, BODY, header, now=now)


def test_a_secret_key_neither_verifies_nor_is_shown_and_a_public_key_cannot_sign(
    v1a_key: str,
) -> None:
    ts = _now()
    header = sign(v1a_key, MSG_ID, ts, BODY)
    with pytest.raises(SigningKeyInvalid, match="whpk_") as e:
        verify(v1a_key, MSG_ID, ts, BODY, header, now=ts)
    assert v1a_key not in str(e.value)
    with pytest.raises(SigningKeyInvalid, match="cannot sign"):
        sign(public_key(v1a_key), MSG_ID, ts, BODY)
    with pytest.raises(SigningKeyInvalid):
        public_key(new_signing_key("v1"))


@pytest.mark.parametrize(
    "key", ["whsk_", "whsk_AAAA", "whsk_not base64", "whsec_", "whsec_%%%%", "whsec_AA"]
)
def test_malformed_signing_keys_are_refused_without_echoing_them(key: str) -> None:
    with pytest.raises(SigningKeyInvalid) as e:
        sign(key, MSG_ID, 1, BODY)
    assert key.split("_", 1)[1] not in str(e.value) or not key.split("_", 1)[1]


@pytest.mark.parametrize("key", ["whpk_", "whpk_AAAA", "whpk_" + "A" * 43])
def test_malformed_public_keys_are_refused(key: str) -> None:
    with pytest.raises(SigningKeyInvalid):
        verify(key, MSG_ID, 1, BODY, "v1a,AAAA", now=1)


# --- rotation: two signatures -------------------------------------------------------------


@pytest.mark.parametrize("schemes", [("v1", "v1"), ("v1a", "v1a"), ("v1", "v1a")])
def test_a_header_with_two_signatures_verifies_with_either_key(
    schemes: tuple[str, str],
) -> None:
    old, new = (new_signing_key(s) for s in schemes)  # type: ignore[arg-type]
    ts = _now()
    h = headers([new, old], MSG_ID, ts, BODY)
    assert len(h["webhook-signature"].split(" ")) == 2
    for key in (old, new):
        verifier = public_key(key) if key.startswith("whsk_") else key
        verify(verifier, MSG_ID, ts, BODY, h["webhook-signature"], now=ts)
    for stranger in (new_signing_key("v1"), public_key(new_signing_key("v1a"))):
        with pytest.raises(AuthenticationFailed):
            verify(stranger, MSG_ID, ts, BODY, h["webhook-signature"], now=ts)


NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("previous", "until", "expected"),
    [
        pytest.param("whsec_old", NOW + dt.timedelta(seconds=1), ["new", "old"], id="overlap"),
        pytest.param("whsec_old", NOW, ["new"], id="overlap-ends-now"),
        pytest.param("whsec_old", NOW - dt.timedelta(hours=1), ["new"], id="overlap-over"),
        pytest.param(None, None, ["new"], id="never-rotated"),
        pytest.param("whsec_old", None, ["new"], id="no-until"),
        pytest.param(
            "whsec_old",
            (NOW + dt.timedelta(minutes=5)).replace(tzinfo=None),
            ["new"] + ["old"],
            id="naive-until-is-utc",
        ),
    ],
)
def test_active_keys(previous: str | None, until: dt.datetime | None, expected: list[str]) -> None:
    names = {"whsec_new": "new", "whsec_old": "old"}
    keys = active_keys("whsec_new", previous, until, NOW)
    assert [names[k] for k in keys] == expected
