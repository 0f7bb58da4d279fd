"""The ages of the signing keys that sign now, as the metrics read them: measured as rotation
measures them, read without rotating or creating a key, never carrying key material."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path

from services.core.crypto.keys import KeyStore, SigningKeyAge
from services.core.crypto.signing_keys import RotationPolicy

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
POLICY = RotationPolicy(max_age=dt.timedelta(days=30), publish_ahead=dt.timedelta(hours=1))


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_no_key_yet_has_no_age_and_none_is_made(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, rotation=POLICY)
    ages = store.signing_key_ages(T0)
    assert set(ages) == {"token", "delivery"}
    for found in ages.values():
        assert found.age_seconds is None
        assert found.max_age_seconds == 30 * 86_400
        assert found.publish_ahead_seconds == 3_600
    assert not (tmp_path / "keys").exists()


def test_the_age_is_of_the_key_that_signs_now(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, rotation=POLICY)
    store.signing_key(T0)
    store.delivery_signing_key(T0 + 2 * DAY)
    ages = KeyStore(tmp_path, rotation=POLICY).signing_key_ages(T0 + 3 * DAY)
    assert ages["token"].age_seconds == 3 * 86_400
    assert ages["delivery"].age_seconds == 86_400


def test_looking_at_a_key_due_for_rotation_does_not_rotate_it(tmp_path: Path) -> None:
    """Rotation is lazy: the first use after max_age publishes the next key, which signs
    publish_ahead later; until then the old key signs, and a scrape is no use."""
    KeyStore(tmp_path, rotation=POLICY).signing_key(T0)
    before = _files(tmp_path)
    overdue = T0 + 40 * DAY
    watcher = KeyStore(tmp_path, rotation=POLICY)
    for _ in range(3):
        assert watcher.signing_key_ages(overdue)["token"].age_seconds == 40 * 86_400
    assert _files(tmp_path) == before

    user = KeyStore(tmp_path, rotation=POLICY)
    old_kid = user.signing_key(overdue).kid  # this use rotates: the old key signs an hour more
    assert _files(tmp_path) != before
    later = overdue + dt.timedelta(minutes=59)
    assert KeyStore(tmp_path, rotation=POLICY).signing_key_ages(later)["token"].age_seconds == (
        (later - T0).total_seconds()
    )
    activated = overdue + dt.timedelta(hours=1, seconds=5)
    assert user.signing_key(activated).kid != old_kid
    fresh = KeyStore(tmp_path, rotation=POLICY).signing_key_ages(activated)["token"]
    assert fresh.age_seconds == 5


def test_a_key_from_before_rotation_existed_is_as_old_as_its_file(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, rotation=POLICY)
    kid = store.signing_key(T0).kid
    folder = tmp_path / "keys" / "token-signing"
    (folder / f"{kid}.meta.json").unlink()
    written = T0 - 50 * DAY
    os.utime(folder / f"{kid}.jwk.json", (written.timestamp(), written.timestamp()))
    ages = KeyStore(tmp_path, rotation=POLICY).signing_key_ages(T0)
    assert ages["token"].age_seconds == 50 * 86_400


def test_the_delivery_keys_have_their_own_policy(tmp_path: Path) -> None:
    delivery = RotationPolicy(max_age=dt.timedelta(days=7), publish_ahead=dt.timedelta(0))
    ages = KeyStore(tmp_path, rotation=POLICY, delivery_rotation=delivery).signing_key_ages(T0)
    assert ages["token"].max_age_seconds == 30 * 86_400
    assert ages["delivery"].max_age_seconds == 7 * 86_400
    assert ages["delivery"].publish_ahead_seconds == 0


def test_an_age_carries_no_key_material(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, rotation=POLICY)
    key = store.signing_key(T0)
    found = store.signing_key_ages(T0 + DAY)["token"]
    assert [f.name for f in dataclasses.fields(SigningKeyAge)] == [
        "age_seconds",
        "max_age_seconds",
        "publish_ahead_seconds",
    ]
    private = key.as_dict(private=True)
    for value in (str(key.kid), private["d"], private["x"], private["y"], key.thumbprint()):
        assert value not in repr(found)
