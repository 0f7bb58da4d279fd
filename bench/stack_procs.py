"""The processes of the production-stack benchmark (``production_stack.py``) and the facts
about the machine printed beside its figures.

Every part is a child in a process group of its own (``start_new_session``), so that a
Ctrl-C at the terminal reaches only the benchmark, which then stops the parts in order; and
each is bound to the benchmark's life (PR_SET_PDEATHSIG, ``services.core.childproc``), so
that a benchmark killed outright leaves no part behind. Stopping sends SIGTERM to the whole
group, then SIGKILL after a timeout."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from services.core.childproc import bind_to_parent

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable
#: the product's command line, as ``isa-broker gateway`` / ``isa-broker router`` run it
CLI = [PYTHON, "-m", "services.cli"]


class PartFailed(RuntimeError):
    """A part did not start, answer or finish as expected; the message ends with the tail
    of its log."""


class Child:
    """One process of the stack, its output (stdout and stderr) in ``<log_dir>/<name>.log``;
    ``part`` names what it is in the CPU figures (``gateway``, ``router``, ...)."""

    def __init__(
        self, name: str, part: str, args: list[str], env: dict[str, str], log_dir: Path
    ) -> None:
        self.name = name
        self.part = part
        self.args = args
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(  # noqa: S603 - our own commands, no shell
                self.args,
                env=self.env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=bind_to_parent,  # noqa: PLW1509
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the process group, SIGKILL to it after ``timeout`` seconds."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        # whatever the group still holds (the part's own children, if any)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no output)"
        return "\n".join(text[-lines:])

    def failed(self, why: str) -> PartFailed:
        return PartFailed(f"{self.name}: {why}\n--- end of {self.log_path} ---\n{self.tail()}")

    async def wait_exit(self, timeout: float) -> int:
        """Wait for the process to end by itself; its exit code."""
        assert self.popen is not None
        deadline = time.monotonic() + timeout
        while self.popen.poll() is None:
            if time.monotonic() > deadline:
                self.stop()
                raise self.failed(f"did not finish within {timeout:g} s")
            await asyncio.sleep(0.1)
        return self.popen.returncode


class Children:
    """Every process the benchmark started; :meth:`stop_all` stops them newest first."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.all: list[Child] = []
        self._names: dict[str, int] = {}

    def start(self, name: str, part: str, args: list[str], env: dict[str, str]) -> Child:
        n = self._names.get(name, 0) + 1
        self._names[name] = n
        child = Child(name if n == 1 else f"{name}-{n}", part, args, env, self.log_dir).start()
        self.all.append(child)
        return child

    def stop(self, *children: Child) -> None:
        for child in children:
            if child.running:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGTERM)  # all at once, then wait for each
        for child in children:
            child.stop()

    def stop_all(self) -> None:
        self.stop(*reversed(self.all))


async def wait_http(url: str, child: Child, timeout: float = 120.0) -> None:
    """Until ``url`` answers 200; a child that exits meanwhile fails at once."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as http:
        while time.monotonic() < deadline:
            if not child.running:
                raise child.failed(f"exited with code {child.popen and child.popen.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise child.failed(f"{url} did not answer 200 within {timeout:g} s")


# -- the machine -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Commit:
    short: str
    dirty: list[str]  # `git status --porcelain` lines

    def __str__(self) -> str:
        if not self.dirty:
            return f"{self.short} (clean tree)"
        return f"{self.short} (dirty tree: {len(self.dirty)} paths changed or untracked)"


def commit() -> Commit:
    def git(*args: str) -> str:
        done = subprocess.run(  # noqa: S603 - a fixed git command
            ["git", *args],  # noqa: S607
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout

    short = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    dirty = [line for line in git("status", "--porcelain").splitlines() if line.strip()]
    return Commit(short, dirty)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min)"


def cpus() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return f"{os.cpu_count()} CPUs" + (f" ({usable} usable)" if usable else "")
