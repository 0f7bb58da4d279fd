"""File-backed key-encryption keys: private files, created once, rotation without
downtime, and several processes sharing one folder."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from services.core.crypto.envelope import IntegrityFailed, UnknownKeyId
from services.core.crypto.kek import KEK_SUFFIX, FileKeyEncryptionKeys
from services.core.crypto.keys import KeyStore
from services.core.errors import Conflict

DATA_KEY = bytes(range(32))


def test_created_at_first_use_owner_only(tmp_path: Path) -> None:
    folder = tmp_path / "keys" / "kek"
    keks = FileKeyEncryptionKeys(folder)
    assert not folder.exists()  # nothing until a key is needed
    wrapped = keks.wrap(DATA_KEY)
    assert keks.unwrap(wrapped.kid, wrapped.wrapped) == DATA_KEY
    assert len(wrapped.wrapped) == 40  # RFC 3394: 32 bytes + 8
    files = list(folder.glob(f"*{KEK_SUFFIX}"))
    assert [f.name for f in files] == [f"{wrapped.kid}{KEK_SUFFIX}"]
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(folder.parent.stat().st_mode) == 0o700
    doc = json.loads(files[0].read_text())
    assert doc["kid"] == wrapped.kid and len(doc["key"]) == 44
    # the same key is used again; no second file
    assert keks.wrap(DATA_KEY).kid == wrapped.kid
    assert len(list(folder.glob(f"*{KEK_SUFFIX}"))) == 1


def test_key_store_holds_the_keks_under_the_data_dir(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    kid = store.kek.wrap(DATA_KEY).kid
    assert (tmp_path / "keys" / "kek" / f"{kid}{KEK_SUFFIX}").exists()


def test_rotation_keeps_old_keys_for_unwrapping(tmp_path: Path) -> None:
    keks = FileKeyEncryptionKeys(tmp_path / "kek")
    old = keks.wrap(DATA_KEY)
    new_kid = keks.rotate()
    assert new_kid != old.kid
    new = keks.wrap(DATA_KEY)
    assert new.kid == new_kid and new.wrapped != old.wrapped
    assert keks.unwrap(old.kid, old.wrapped) == DATA_KEY
    assert keks.unwrap(new.kid, new.wrapped) == DATA_KEY
    listed = keks.describe()
    assert [(k.kid, k.current) for k in listed] == [(old.kid, False), (new_kid, True)]
    assert listed[0].created_at <= listed[1].created_at
    # the current key cannot be retired; an old one can, then its wraps are unreadable
    with pytest.raises(Conflict):
        keks.retire(new_kid)
    keks.retire(old.kid)
    with pytest.raises(UnknownKeyId):
        keks.unwrap(old.kid, old.wrapped)
    with pytest.raises(UnknownKeyId):
        keks.retire(old.kid)
    assert [k.kid for k in keks.describe()] == [new_kid]


def test_altered_wrapped_key_is_an_integrity_failure(tmp_path: Path) -> None:
    keks = FileKeyEncryptionKeys(tmp_path / "kek")
    w = keks.wrap(DATA_KEY)
    with pytest.raises(IntegrityFailed):
        keks.unwrap(w.kid, bytes([w.wrapped[0] ^ 1]) + w.wrapped[1:])
    with pytest.raises(IntegrityFailed):
        keks.unwrap(w.kid, w.wrapped[:20])


def test_two_processes_on_one_folder_agree(tmp_path: Path) -> None:
    folder = tmp_path / "kek"
    gateway, router = FileKeyEncryptionKeys(folder), FileKeyEncryptionKeys(folder)
    first = gateway.wrap(DATA_KEY)
    assert router.wrap(DATA_KEY).kid == first.kid  # found, not created again
    # the operator rotates from a third process (the CLI): the router meets the new kid at
    # once (an unknown kid re-reads the folder), and wraps with it within a second
    new_kid = FileKeyEncryptionKeys(folder).rotate()
    w = gateway.wrap(DATA_KEY)  # may still be the old key for up to a second: both unwrap
    assert router.unwrap(w.kid, w.wrapped) == DATA_KEY
    sealed_new = FileKeyEncryptionKeys(folder).wrap(DATA_KEY)
    assert sealed_new.kid == new_kid
    assert router.unwrap(new_kid, sealed_new.wrapped) == DATA_KEY
    assert router.unwrap(first.kid, first.wrapped) == DATA_KEY


def test_concurrent_first_use_creates_one_key(tmp_path: Path) -> None:
    folder = tmp_path / "kek"
    kids: list[str] = []

    def first_use() -> None:
        kids.append(FileKeyEncryptionKeys(folder).wrap(DATA_KEY).kid)

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(kids)) == 1
    assert len(os.listdir(folder)) == 2  # the key and the lock file


def test_cli_lists_rotates_and_retires(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from services.cli import main

    monkeypatch.setenv("ISA_BROKER_DATA_DIR", str(tmp_path))
    assert main(["keys", "list"]) == 0
    first = [line for line in capsys.readouterr().out.splitlines() if "\tkek " in line]
    assert len(first) == 1 and "kek current" in first[0]
    old_kid = first[0].split("\t")[0]
    assert main(["keys", "rotate-kek"]) == 0
    new_kid = capsys.readouterr().out.split()[-1]
    assert main(["keys", "list"]) == 0
    out = capsys.readouterr().out
    assert f"{old_kid}\tkek unwraps only\tcreated " in out
    assert f"{new_kid}\tkek current\tcreated " in out
    assert main(["keys", "retire-kek", new_kid]) == 2  # the current one: refused
    assert "rotate first" in capsys.readouterr().err
    assert main(["keys", "retire-kek", old_kid]) == 0
    assert not (tmp_path / "keys" / "kek" / f"{old_kid}{KEK_SUFFIX}").exists()
    # both are in the disclosure log, key ids only; the refused retirement is not
    with sqlite3.connect(tmp_path / "isa-broker.db") as db:
        rows = db.execute(
            "SELECT event, actor, detail FROM audit WHERE event LIKE 'kek_%' ORDER BY seq"
        ).fetchall()
    assert [(e, a, json.loads(d)) for e, a, d in rows] == [
        ("kek_rotated", "operator", {"kid": new_kid, "client_id": "cli"}),
        ("kek_retired", "operator", {"kid": old_kid, "client_id": "cli"}),
    ]
