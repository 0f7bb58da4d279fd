"""``isa-broker audit subject-access`` and ``audit disclosures``: exports and their own log
entries (actor ``operator``). Synthetic identifiers only."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path
from typing import Any

import pytest

from services.cli import main
from services.core.settings import Settings
from services.core.store import Store


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ISA_BROKER_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def _log(event: str) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        store = Store(Settings().resolved_database_url)
        try:
            return [e for e in await store.audit_entries() if e["event"] == event]
        finally:
            await store.aclose()

    return asyncio.run(read())


def test_subject_access_writes_csv_and_is_logged_without_the_identifier(
    data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sar.csv"
    argv = ["audit", "subject-access", "--crn", "X100001", "--format", "csv", "--out", str(out)]
    assert main(argv) == 0
    header = next(csv.reader(out.read_text().splitlines()))
    assert header[:3] == ["seq", "at", "event"] and "lawful_basis" in header
    [entry] = _log("subject_access")
    assert entry["actor"] == "operator" and entry["detail"]["entries"] == 0
    assert "X100001" not in json.dumps(entry["detail"])


def test_disclosures_as_json_and_logged(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["audit", "disclosures", "--agreement", "ISA-EB-010", "--since", "2026-01-01"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out) == []
    [entry] = _log("ig_query")
    assert entry["detail"]["agreement"] == "ISA-EB-010"


def test_a_bad_identifier_names_the_option(data_dir: Path) -> None:
    with pytest.raises(SystemExit, match="--pnc-id"):
        main(["audit", "subject-access", "--pnc-id", "not-a-pnc"])
    with pytest.raises(SystemExit, match="--crn"):
        main(["audit", "subject-access"])
