"""``isa-broker audit rotate-key``: a new log-signing key signs the next checkpoint, the older
one keeps verifying the checkpoints it signed, and the rotation is in the disclosure log."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from services.core.audit.keys import LogSigningKeys, verify_signature

CHECKPOINT = {"tree_size": 1, "root_hash": "00" * 32, "chain_hash": "11" * 32, "signed_at": "t"}


def test_rotation_changes_the_signer_in_a_running_process_and_keeps_old_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from services.cli import main

    monkeypatch.setenv("ISA_BROKER_DATA_DIR", str(tmp_path))
    running = LogSigningKeys(tmp_path)  # a sealer's keys, in a process already running
    before = running.sign(CHECKPOINT)
    assert main(["audit", "rotate-key"]) == 0
    new_kid = capsys.readouterr().out.split()[3].rstrip(":")
    after = running.sign(CHECKPOINT)
    assert after["key_id"] == new_kid != before["key_id"]
    trusted = LogSigningKeys(tmp_path).public_keys()
    assert set(trusted) == {before["key_id"], new_kid}
    assert verify_signature(trusted, before) and verify_signature(trusted, after)
    with sqlite3.connect(tmp_path / "isa-broker.db") as db:
        [(actor, detail)] = db.execute(
            "SELECT actor, detail FROM audit WHERE event = 'log_signing_key_rotated'"
        ).fetchall()
    assert actor == "operator" and json.loads(detail) == {"kid": new_kid, "client_id": "cli"}


def test_a_rotation_in_the_same_clock_tick_still_makes_the_new_key_sign(tmp_path: Path) -> None:
    keys = LogSigningKeys(tmp_path)
    first = keys.sign(CHECKPOINT)["key_id"]
    kids = [keys.rotate() for _ in range(3)]
    assert len({first, *kids}) == 4
    assert keys.sign(CHECKPOINT)["key_id"] == kids[-1]
