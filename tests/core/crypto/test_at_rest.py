"""Sealing webhook signing keys at rest: a round trip, bound to the subscription; a value
altered or malformed does not open; a key stored in clear before sealing is used as is."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.core.crypto.at_rest import SigningKeysAtRest, is_sealed, kek_of
from services.core.crypto.envelope import Envelope, EnvelopeError, UnknownKeyId
from services.core.crypto.kek import FileKeyEncryptionKeys

SECRET = "whsec_" + "A" * 44


@pytest.fixture
def box(tmp_path: Path) -> SigningKeysAtRest:
    return SigningKeysAtRest(Envelope(FileKeyEncryptionKeys(tmp_path / "kek")))


def test_round_trip_bound_to_the_subscription(box: SigningKeysAtRest) -> None:
    sealed = box.seal("sub-1", SECRET)
    assert is_sealed(sealed) and SECRET not in sealed and kek_of(sealed) == box.current_kek()
    assert box.seal("sub-1", SECRET) != sealed  # a fresh data key and nonce each time
    assert box.open_("sub-1", sealed) == SECRET
    with pytest.raises(EnvelopeError):
        box.open_("sub-2", sealed)


def test_altered_or_malformed_values_do_not_open(box: SigningKeysAtRest) -> None:
    sealed = box.seal("sub-1", SECRET)
    head, body = sealed.rsplit(":", 1)
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    with pytest.raises(EnvelopeError):
        box.open_("sub-1", f"{head}:{flipped}")
    with pytest.raises(EnvelopeError):
        box.open_("sub-1", "env1:only:three")
    with pytest.raises(UnknownKeyId):
        box.open_("sub-1", sealed.replace(str(kek_of(sealed)), "kek-0000000000000000"))


def test_a_key_stored_in_clear_is_used_as_it_is(box: SigningKeysAtRest) -> None:
    assert box.open_("sub-1", SECRET) == SECRET
    assert box.open_("sub-1", None) is None
    assert kek_of(SECRET) is None
