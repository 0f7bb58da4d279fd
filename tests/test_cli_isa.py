"""The IG officers' tools: isa lint, isa explain, isa coverage, isa export-odrl."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from services.cli import main
from services.core.settings import REPO_ROOT

EXAMPLE = REPO_ROOT / "docs" / "examples" / "release-notice.json"


@pytest.fixture
def policies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "isa_policies"
    shutil.copytree(REPO_ROOT / "isa_policies", target)
    monkeypatch.setenv("ISA_BROKER_POLICIES_DIR", str(target))
    return target


def test_lint_passes_the_demo_partnership_with_warnings(
    policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["isa", "lint", "--at", "2026-11-25"]) == 0
    out = capsys.readouterr().out
    assert "0 error(s)" in out
    assert "ISA-EB-030: review was due on 2026-06-01" in out
    assert "ISA-WS-003: status is active but it expired on 2022-12-31" in out
    assert main(["isa", "lint", "--strict", "--at", "2026-11-25"]) == 1


def test_lint_reports_every_broken_file_and_contradictions(
    policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eb40 = policies / "agreements" / "ISA-EB-040.yaml"
    eb40.write_text(eb40.read_text().replace("- person.prison_number", "- person.shoe_size", 1))
    eb10 = policies / "agreements" / "ISA-EB-010.yaml"
    eb10.write_text(
        eb10.read_text().replace(
            "fields: [person, release, destination, risk, licence_conditions]\n",
            "fields: [person, release, destination, risk, licence_conditions,"
            " resettlement_needs]\n",
            1,
        )
    )
    assert main(["isa", "lint", "--at", "2026-11-25"]) == 1
    out = capsys.readouterr().out
    assert (
        "ERROR   ISA-EB-040.yaml: ISA-EB-040 /flows/0 (release-to-housing): release-notice has "
        "no field(s) ['person.shoe_size']" in out
    )
    assert (
        "flow release-to-iom allows resettlement_needs.mental_health, "
        "resettlement_needs.opioid_substitution_therapy to eastborough-police-iom, but hard "
        "block health-data-stays-clinical of ISA-EB-000 forbids it (the block wins)"
    ) in out
    assert "1 error(s)" in out


def test_explain_shows_each_recipient_field_by_field(
    policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["isa", "explain", str(EXAMPLE), "--as", "hmp-northgate", "--at", "2026-11-29"]) == 0
    )
    out = capsys.readouterr().out
    assert "eastborough-vawg receives 9 of 30 fields" in out
    assert "+ release.date" in out and "ISA-EB-020@1.2#perpetrator-release-alert" in out
    assert "ISA-EB-050 v0.3 flow release-to-mental-health: ISA-EB-050 v0.3 is draft" in out
    assert "Testperson" not in out and "Demo" not in out.split("from")[0]


def test_explain_a_refusal_names_the_rule(
    policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["isa", "explain", str(EXAMPLE), "--as", "hmp-northgate", "--purpose", "youth-transition"]
    )
    assert code == 3
    out = capsys.readouterr().out
    assert "REFUSED (agreement_not_in_force)" in out and "ISA-WS-003" in out


def test_explain_an_invalid_message_lists_its_errors(
    tmp_path: Path, policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"person": {"given_name": "A"}}))
    assert (
        main(["isa", "explain", str(bad), "--as", "hmp-northgate", "--type", "release-notice"]) == 1
    )
    assert "/release: Field required" in capsys.readouterr().out


def test_coverage_shows_the_matrix_and_the_gaps(
    policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["isa", "coverage", "--at", "2026-11-25"]) == 0
    out = capsys.readouterr().out
    assert "hmp-northgate            -> eastborough-vawg" in out
    assert (
        "GAP release-notice hmp-northgate -> eastborough-mental-health: ISA-EB-050 v0.3 is draft"
        in out
    )
    assert (
        "GAP dip-breach eastborough-police-dip -> eastborough-housing: no agreement has such a flow"
        in out
    )
    assert "6 of 9 needs covered, 3 gap(s)" in out


def test_coverage_lists_agreements_expiring_soon(
    policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["isa", "coverage", "--at", "2027-07-01"]) == 0
    out = capsys.readouterr().out
    assert "Expiring within 90 days:" in out and "ISA-EB-020 on 2027-08-31 (61 days)" in out


def test_the_file_tools_need_no_mode_but_the_store_commands_default_to_production(
    policies: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With ISA_BROKER_MODE unset, the tools that only read files run as usual, while a
    command that opens the store applies the production rules and says how to ask for dev
    mode, in one line without a traceback."""
    monkeypatch.delenv("ISA_BROKER_MODE")
    monkeypatch.setenv("ISA_BROKER_DATA_DIR", str(tmp_path / "data"))
    assert main(["isa", "lint", "--at", "2026-11-25"]) == 0
    assert "0 error(s)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["clients", "list"])
    message = str(info.value.code)
    assert message.startswith("isa-broker: invalid settings: ")
    assert "ISA_BROKER_DATABASE_URL must name PostgreSQL in production" in message
    assert "ISA_BROKER_MODE=dev" in message
    assert "input_value" not in message  # pydantic's repetition of every value given
    assert not (tmp_path / "data").exists()  # nothing was created
