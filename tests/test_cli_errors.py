"""Bad input to any command gets one line on stderr naming the input and what is wrong, and a
non-zero exit: never a traceback. Each case runs the real command in its own process, as an
operator would."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from services.cli import main
from services.core.settings import REPO_ROOT


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ISA_BROKER_", "KAFKA_"))}
    environ.update(ISA_BROKER_MODE="dev", ISA_BROKER_DATA_DIR=str(tmp_path / "data"), **env)
    return subprocess.run(  # noqa: S603 - our own command, fixed arguments
        [sys.executable, "-m", "services.cli", *args],
        cwd=REPO_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed command printed, after checking there is no more."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("isa-broker: "), lines[0]
    return lines[0]


@pytest.fixture
def bad_json(tmp_path: Path) -> Path:
    path = tmp_path / "bad.json"
    path.write_text('{"keys": [')
    return path


@pytest.fixture
def broken_needs(tmp_path: Path) -> Path:
    target = tmp_path / "isa_policies"
    shutil.copytree(REPO_ROOT / "isa_policies", target)
    (target / "needs.yaml").write_text("needs: [from: a: b\n")
    return target


def test_a_file_given_to_a_command_that_does_not_exist(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere.json")
    line = one_line(
        run(["clients", "create", "--party", "hmp-northgate", "--jwks", missing], tmp_path)
    )
    assert "--jwks" in line and missing in line and "No such file" in line
    line = one_line(run(["isa", "explain", "--as", "hmp-northgate", missing], tmp_path))
    assert missing in line and "No such file" in line


def test_a_file_given_to_a_command_that_is_not_json(tmp_path: Path, bad_json: Path) -> None:
    args = ["clients", "create", "--party", "hmp-northgate", "--jwks", str(bad_json)]
    line = one_line(run(args, tmp_path))
    assert "--jwks" in line and str(bad_json) in line and "not valid JSON" in line
    assert '{"keys"' not in line  # the content is never repeated


def test_a_setting_that_is_not_valid_json(tmp_path: Path) -> None:
    line = one_line(run(["clients", "list"], tmp_path, ISA_BROKER_WEBHOOK_RETRY_SCHEDULE="[1, 2,"))
    assert "ISA_BROKER_WEBHOOK_RETRY_SCHEDULE: not valid JSON" in line


def test_an_unreachable_postgresql(tmp_path: Path) -> None:
    url = "postgresql://isa:synthetic-password@127.0.0.1:1/isa"
    line = one_line(run(["clients", "list"], tmp_path, ISA_BROKER_DATABASE_URL=url))
    assert "unavailable" in line and "127.0.0.1:1" in line
    assert "synthetic-password" not in line


def test_a_database_url_with_a_driver_the_store_does_not_run_on(tmp_path: Path) -> None:
    url = "mysql://isa:synthetic-password@127.0.0.1/isa"
    line = one_line(run(["db", "upgrade"], tmp_path, ISA_BROKER_DATABASE_URL=url))
    assert "ISA_BROKER_DATABASE_URL" in line and "'mysql' is not supported" in line


def test_a_malformed_needs_file(tmp_path: Path, broken_needs: Path) -> None:
    line = one_line(run(["isa", "coverage"], tmp_path, ISA_BROKER_POLICIES_DIR=str(broken_needs)))
    assert "needs.yaml: not valid YAML at line 1" in line


@pytest.mark.parametrize(
    "args",
    [
        ["audit", "checkpoints", "export", "--out", "{blocked}/checkpoints.json"],
        ["isa", "export-odrl", "--out", "{blocked}/odrl"],
    ],
    ids=["audit-checkpoints-export", "isa-export-odrl"],
)
def test_an_output_path_that_cannot_be_written(tmp_path: Path, args: list[str]) -> None:
    blocked = tmp_path / "a-file-not-a-folder"
    blocked.write_text("")
    args = [a.format(blocked=blocked) for a in args]
    line = one_line(run(args, tmp_path))
    assert str(blocked) in line


def test_an_unexpected_error_says_where_its_details_are(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)

    def broken(_args: object) -> int:
        raise RuntimeError("a fault in the command itself")

    monkeypatch.setattr("services.cli.files.schemas_export", broken)
    assert main(["schemas", "export"]) == 70
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("isa-broker: unexpected error (RuntimeError); the details were ")
    details = Path(line.rsplit(" ", 1)[1])
    assert details.parent == tmp_path
    assert "a fault in the command itself" in details.read_text()
    assert stat.S_IMODE(details.stat().st_mode) == 0o600


def test_every_option_and_argument_has_help_and_the_version_is_shown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    parsers: list[argparse.ArgumentParser] = []
    built = argparse.ArgumentParser.__init__

    def record(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        built(self, *args, **kwargs)  # type: ignore[arg-type]
        parsers.append(self)

    monkeypatch.setattr(argparse.ArgumentParser, "__init__", record)
    with pytest.raises(SystemExit) as shown:
        main(["--version"])
    assert shown.value.code == 0
    assert capsys.readouterr().out.startswith("isa-broker ")
    silent = [
        f"{p.prog} {'/'.join(a.option_strings) or a.dest}"
        for p in parsers
        for a in p._actions
        if a.help is None and not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
    ]
    assert len(parsers) > 30
    assert silent == []
