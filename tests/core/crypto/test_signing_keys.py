"""Token-signing key rotation: a next key is published before it signs, the old one stays
published until its tokens have expired, then it is withdrawn and its file deleted."""

from __future__ import annotations

import datetime as dt
import json
import stat
import threading
from pathlib import Path

from services.core.crypto.signing_keys import RotationPolicy, SigningKeys

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
POLICY = RotationPolicy(
    max_age=dt.timedelta(days=30),
    publish_ahead=dt.timedelta(hours=1),
    grace=dt.timedelta(seconds=330),
)


def _kids(keys: SigningKeys, at: dt.datetime) -> list[str]:
    return [k.kid for k in keys.published(at)]


def test_rotation_publishes_the_next_key_before_it_signs(tmp_path: Path) -> None:
    keys = SigningKeys(tmp_path / "ks", POLICY)
    first = keys.active(T0).kid
    nxt = keys.rotate(T0 + dt.timedelta(minutes=1))
    assert nxt.kid != first

    # published at once, but the old key still signs until the next one activates
    just_after = T0 + dt.timedelta(minutes=2)
    assert set(_kids(keys, just_after)) == {first, nxt.kid}
    assert keys.active(just_after).kid == first
    assert keys.key_set(just_after).get_by_kid(nxt.kid) is not None

    # an hour later the next key signs; the old one is still published for the grace time
    switched = T0 + dt.timedelta(minutes=61)
    assert keys.active(switched).kid == nxt.kid
    assert set(_kids(keys, switched)) == {first, nxt.kid}
    states = {d["kid"]: d["state"] for d in keys.describe(switched)}
    assert states == {first: "retired", nxt.kid: "active"}

    # after the longest token lifetime plus skew it is withdrawn
    later = switched + POLICY.grace + dt.timedelta(seconds=1)
    assert _kids(keys, later) == [nxt.kid]


def test_a_second_rotation_while_one_is_waiting_changes_nothing(tmp_path: Path) -> None:
    keys = SigningKeys(tmp_path / "ks", POLICY)
    keys.active(T0)
    a = keys.rotate(T0)
    b = keys.rotate(T0 + dt.timedelta(minutes=5))
    assert a.kid == b.kid
    assert len(list((tmp_path / "ks").glob("*.jwk.json"))) == 2


def test_keys_rotate_by_themselves_when_too_old(tmp_path: Path) -> None:
    keys = SigningKeys(tmp_path / "ks", POLICY)
    first = keys.active(T0).kid
    assert _kids(keys, T0 + dt.timedelta(days=29)) == [first]
    due = T0 + dt.timedelta(days=30, seconds=1)
    published = _kids(keys, due)
    assert len(published) == 2 and first in published
    assert keys.active(due).kid == first  # the new one waits its hour
    assert keys.active(due + dt.timedelta(hours=1)).kid != first


def test_withdrawn_key_files_are_deleted_at_the_next_rotation(tmp_path: Path) -> None:
    keys = SigningKeys(tmp_path / "ks", POLICY)
    first = keys.active(T0).kid
    keys.rotate(T0, publish_ahead=dt.timedelta(0))
    much_later = T0 + dt.timedelta(days=1)
    keys.rotate(much_later, publish_ahead=dt.timedelta(0))
    names = {p.name for p in (tmp_path / "ks").iterdir()}
    assert f"{first}.jwk.json" not in names and f"{first}.meta.json" not in names


def test_another_process_sees_a_rotation(tmp_path: Path) -> None:
    """The CLI rotates in its own process; a running gateway reads the folder again."""
    gateway = SigningKeys(tmp_path / "ks", POLICY)
    first = gateway.active(T0).kid
    cli = SigningKeys(tmp_path / "ks", POLICY)
    nxt = cli.rotate(T0, publish_ahead=dt.timedelta(0))
    gateway._checked = 0.0  # noqa: SLF001 - skip the one-second re-read interval
    assert gateway.active(T0 + dt.timedelta(seconds=1)).kid == nxt.kid
    assert first in _kids(gateway, T0 + dt.timedelta(seconds=1))


def test_concurrent_first_use_creates_one_key(tmp_path: Path) -> None:
    kids: list[str] = []

    def use() -> None:
        kids.append(SigningKeys(tmp_path / "ks", POLICY).active(T0).kid)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(kids)) == 1
    assert len(list((tmp_path / "ks").glob("*.jwk.json"))) == 1


def test_key_files_are_private_and_metadata_is_readable(tmp_path: Path) -> None:
    keys = SigningKeys(tmp_path / "ks", POLICY)
    kid = keys.active(T0).kid
    for suffix in (".jwk.json", ".meta.json"):
        path = tmp_path / "ks" / f"{kid}{suffix}"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    meta = json.loads((tmp_path / "ks" / f"{kid}.meta.json").read_text())
    assert meta["activates_at"] == T0.isoformat() and meta["retires_at"] is None
    # the published set never carries private parts
    assert all("d" not in k for k in keys.key_set(T0).as_dict(private=False)["keys"])


def test_a_key_from_before_rotation_existed_stays_active(tmp_path: Path) -> None:
    """Key files written without metadata (older versions) are the active key."""
    old = SigningKeys(tmp_path / "ks", POLICY)
    kid = old.active(T0).kid
    (tmp_path / "ks" / f"{kid}.meta.json").unlink()
    again = SigningKeys(tmp_path / "ks", POLICY)
    assert again.active(dt.datetime.now(dt.UTC)).kid == kid
