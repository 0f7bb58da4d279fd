"""Progress bars on the long commands (services/cli/progress.py): drawn on standard error when
it is a terminal, gone when the work is done or fails, and nothing at all in a pipe, so that
standard output (what scripts parse) and standard error stay as they were."""

from __future__ import annotations

import asyncio
import io
import os
import pty
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from rich.console import Console
from rich.file_proxy import FileProxy

from services.cli import main
from services.cli import progress as cli_progress
from services.cli.progress import ProgressBar, progress_on_stderr
from services.core.errors import Unavailable
from services.core.settings import REPO_ROOT, Settings
from services.core.store import Store

SHOW_CURSOR = "\x1b[?25h"
ERASE_LINE = "\x1b[2K"


def cleared(drawn: str) -> bool:
    """The screen's last writes show the cursor again and erase the bar, drawing nothing."""
    if SHOW_CURSOR not in drawn:
        return False
    tail = drawn.rsplit(SHOW_CURSOR, 1)[1]
    return ERASE_LINE in tail and "━" not in tail and "/" not in tail


def terminal(buffer: io.StringIO) -> Console:
    return Console(file=buffer, force_terminal=True, force_interactive=True, width=100)


def test_a_terminal_sees_the_bar_and_it_is_gone_at_the_end() -> None:
    screen = io.StringIO()
    with ProgressBar(terminal(screen)) as progress:
        assert progress.shown
        progress.update("verifying the log", 0, 40)
        on_progress = progress.callback("verifying the log")
        on_progress(40, 40)  # done: its bar goes
        progress.update("searching the disclosure log", 0)  # no total: time passing only
    drawn = screen.getvalue()
    assert "verifying the log" in drawn and "0/40" in drawn
    assert "searching the disclosure log" in drawn
    assert cleared(drawn)  # transient: nothing is left on the screen


def test_a_result_line_goes_to_stdout_with_the_bar_set_aside(
    capsys: pytest.CaptureFixture[str],
) -> None:
    screen = io.StringIO()
    with ProgressBar(terminal(screen)) as progress:
        progress.update("simulated days", 3, 21)
        progress.write("5. a step of the scenario")
        before = screen.getvalue()
        progress.update("simulated days", 4, 21)  # the bar comes back
        assert len(screen.getvalue()) > len(before)
    assert cleared(before)  # the bar was off the screen when the line was printed
    assert capsys.readouterr() == ("5. a step of the scenario\n", "")


def test_nothing_is_written_when_the_console_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = io.StringIO()
    with ProgressBar(Console(file=log, force_terminal=False)) as progress:
        assert not progress.shown
        progress.update("verifying the log", 1, 10)
        progress.callback("reading the sealed entries")(2, 10)
        progress.update("searching the disclosure log", 0)
        progress.write("a result")
    assert log.getvalue() == ""
    assert capsys.readouterr() == ("a result\n", "")
    with progress_on_stderr() as progress:  # pytest's captured stderr is no terminal
        assert not progress.shown


@pytest.mark.parametrize(
    ("error", "status"),
    [(RuntimeError("a fault"), 70), (Unavailable("the store is unavailable"), 2)],
    ids=["unexpected", "broker-error"],
)
def test_an_error_in_the_middle_stops_the_bar_and_is_reported_on_one_line(
    error: Exception,
    status: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ISA_BROKER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    screen = io.StringIO()
    monkeypatch.setattr(cli_progress, "terminal_stderr", lambda: terminal(screen))

    async def failing(*_args: object, on_progress: object, **_kw: object) -> None:
        assert callable(on_progress)
        on_progress(3, 10)
        raise error

    monkeypatch.setattr("services.core.audit.verify.verify_log", failing)
    assert main(["audit", "verify"]) == status
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("isa-broker: ")
    drawn = screen.getvalue()
    assert "verifying the log" in drawn and "3/10" in drawn
    assert cleared(drawn)
    assert not isinstance(sys.stdout, FileProxy) and not isinstance(sys.stderr, FileProxy)


# -- the real command, in its own process -------------------------------------------------------


@pytest.fixture
def sealed_log(tmp_path: Path) -> Path:
    """A data folder whose disclosure log holds six entries, sealed by ``audit seal``."""
    data_dir = tmp_path / "data"

    async def write() -> None:
        store = Store(Settings(data_dir=data_dir).resolved_database_url)
        try:
            await store.init_schema()
            for i in range(6):
                await store.audit(
                    "delivered",
                    message_id=f"m{i:04d}",
                    message_type="release-notice",
                    recipient="eastborough-vlo",
                    detail={"delivery_id": f"d{i}", "fields": ["release.date"]},
                )
        finally:
            await store.aclose()

    data_dir.mkdir(mode=0o700)
    asyncio.run(write())
    sealed = _run(["audit", "seal"], data_dir)
    assert sealed.returncode == 0, sealed.stderr
    return data_dir


def _environ(data_dir: Path, **extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ISA_BROKER_", "KAFKA_"))}
    environ.update(ISA_BROKER_MODE="dev", ISA_BROKER_DATA_DIR=str(data_dir), **extra)
    return environ


def _run(args: list[str], data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own command, fixed arguments
        [sys.executable, "-m", "services.cli", *args],
        cwd=REPO_ROOT,
        env=_environ(data_dir, **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


VERIFIED = "OK: 6 sealed entries, 1 checkpoints verified; 0 entries not yet sealed\n"


@pytest.mark.integration
def test_audit_verify_in_a_pipe_prints_its_one_line_and_no_progress(sealed_log: Path) -> None:
    # even where a CI job forces colour, a pipe is not a terminal: no bar
    for env in ({}, {"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1", "TERM": "xterm-256color"}):
        result = _run(["audit", "verify"], sealed_log, **env)
        assert (result.returncode, result.stdout, result.stderr) == (0, VERIFIED, "")
    out = sealed_log.parent / "checkpoints.json"
    result = _run(["audit", "checkpoints", "export", "--out", str(out)], sealed_log)
    assert (result.stdout, result.stderr) == (f"wrote 1 checkpoints to {out}\n", "")


@pytest.mark.integration
def test_audit_verify_on_a_terminal_draws_the_bar_on_stderr_only(sealed_log: Path) -> None:
    controller, stderr_tty = pty.openpty()
    env = _environ(sealed_log, TERM="xterm-256color", COLUMNS="100")
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR"):
        env.pop(name, None)
    with subprocess.Popen(  # noqa: S603 - our own command, fixed arguments
        [sys.executable, "-m", "services.cli", "audit", "verify"],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr_tty,
        text=True,
    ) as proc:
        os.close(stderr_tty)
        drawn: list[bytes] = []
        reader = threading.Thread(target=_read_all, args=(controller, drawn))
        reader.start()
        stdout, _ = proc.communicate(timeout=120)
        reader.join(timeout=30)
    os.close(controller)
    assert (proc.returncode, stdout) == (0, VERIFIED)
    screen = b"".join(drawn).decode()
    assert "verifying the log" in screen
    assert "OK:" not in screen  # the result is on stdout only


def _read_all(fd: int, into: list[bytes]) -> None:
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the other end closed (Linux: EIO)
            return
        if not chunk:
            return
        into.append(chunk)
