#!/usr/bin/env python3
"""Check, or regenerate, the command examples shown in the documentation.

    python docs/examples/regenerate.py             check (the default): exit 1 naming every
                                                   example whose text differs, with a diff
    python docs/examples/regenerate.py --write     rewrite those examples in place
    python docs/examples/regenerate.py --list      the examples found and their commands
    python docs/examples/regenerate.py --only ID   only this example (repeatable)
    python docs/examples/regenerate.py --fresh-processes
                                                   start every isa-broker command anew
                                                   (slower, the same output)

Run it with the project's Python (``.venv/bin/python``): it needs the standard library and
the project installed there, nothing else. By default each ``isa-broker`` command is forked
from one server process that has imported the code already (:class:`CommandServer`), which
makes the whole check take seconds rather than a minute.

An example is a ``console`` block of README.md, docs/*.md or deploy/*.md preceded by a
marker line::

    <!-- example: isa-lint -->
    ```console
    $ isa-broker isa lint --at 2026-11-25
    WARNING ISA-EB-010.yaml: ...
    ```

Each ``$ `` line is a shell command; the lines after it, up to the next ``$ `` line or the
closing fence, are what it prints (standard output and standard error, as a terminal shows
them). The commands of one example run in order, with ``/bin/sh``, in a fresh temporary
folder of their own that holds a link to ``docs/`` (so ``docs/examples/release-notice.json``
resolves), with:

- ``ISA_BROKER_DATA_DIR`` a fresh data directory in that folder (so store and key commands
  start from nothing: SQLite store, no key), ``ISA_BROKER_MODE=dev``,
  ``ISA_BROKER_PUBLIC_URL=https://isa-broker.example`` and ``ISA_BROKER_POLICIES_DIR`` the
  shipped agreements in ``isa_policies/``; no other ``ISA_BROKER_`` variable and no
  ``KAFKA_BOOTSTRAP_SERVERS`` from the caller's environment;
- ``isa-broker`` on ``PATH``: this checkout's command, run by this Python.

Options after the marker's id:

- ``setup=NAME[,NAME...]``: what the example needs first (files, settings, hidden commands,
  a pause between commands); the names are those of :data:`SETUPS`;
- ``excerpt=1-2,6,8``: show only these paragraphs (groups of lines between blank lines) of
  the command's output, with a ``...`` line where paragraphs are left out.

What differs on every run is replaced by the placeholders of :data:`PLACEHOLDERS` (client
secrets, the random part of client ids, key ids, thumbprints, times). A command that ends
with an exit code above 3 (the CLI's unexpected error is 70, the shell's "not found" 127)
fails the example, and nothing is written.

A ``console`` block that is not to be run carries ``<!-- example-unchecked: REASON -->``
instead; a ``console`` block with neither marker is an error, so that no new example escapes
the check. tests/test_doc_examples.py runs the check."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_URL = "https://isa-broker.example"
#: exit codes the CLI documents (0 done, 1 check failed, 2 refused input, 3 share refused)
USUAL_EXIT_CODES = range(4)
COMMAND_TIMEOUT_SECONDS = 120

MARKER = re.compile(r"^<!-- example: (?P<id>[\w.-]+)(?P<options>(?: [\w-]+=\S+)*) -->$")
UNCHECKED = re.compile(r"^<!-- example-unchecked: .+ -->$")
FENCE = "```"


# -- what an example may need first ------------------------------------------------------------


def _vawg_jwks() -> str:
    """The public JWK set integrators.md's snippet makes for the VAWG service."""
    import json

    from joserfc.jwk import ECKey

    key = ECKey.generate_key(
        "P-256", parameters={"kid": "vawg-2026-01", "alg": "ES256", "use": "sig"}
    )
    return json.dumps({"keys": [key.as_dict(private=False)]})


@dataclass(frozen=True)
class Setup:
    """Prepares an example's folder: ``files`` written into it, ``env`` added to the
    commands' environment, ``commands`` run before the example's own (their output is not
    shown), and ``pause`` seconds waited before each of the example's commands but the
    first."""

    about: str
    files: Mapping[str, Callable[[], str]] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    commands: tuple[str, ...] = ()
    pause: float = 0.0


SETUPS: dict[str, Setup] = {
    "vawg-jwks": Setup(
        "vawg-jwks.json: a public JWK set, as integrators.md shows how to make",
        files={"vawg-jwks.json": _vawg_jwks},
    ),
    "oidc-issuer": Setup(
        "an external OpenID Connect provider is configured (nothing is fetched from it)",
        env={"ISA_BROKER_OIDC_ISSUER": "https://idp.eastborough.example"},
    ),
    "active-token-key": Setup(
        "a token-signing key already signs, as after the gateway's first token",
        commands=("isa-broker keys rotate --publish-ahead 0",),
    ),
    "an-hour-later": Setup(
        "a next key is published 1 s rather than an hour before it signs, and the commands "
        "run 2 s apart: the second command sees what it would see an hour later",
        env={"ISA_BROKER_SIGNING_KEY_PUBLISH_AHEAD_SECONDS": "1"},
        pause=2.0,
    ),
}


# -- what differs on every run -----------------------------------------------------------------


@dataclass(frozen=True)
class Placeholder:
    name: str
    pattern: re.Pattern[str]
    #: the replacement; ``{n}`` numbers distinct values in the order they first appear
    replacement: str


PLACEHOLDERS: tuple[Placeholder, ...] = (
    Placeholder("client secret", re.compile(r"\bcs_[A-Za-z0-9_-]{20,}"), "<client-secret>"),
    Placeholder(
        "the random part of a client id",
        re.compile(r"\b(?P<party>[a-z][a-z0-9-]*)\.[0-9a-f]{12}\b"),
        r"\g<party>.<id>",
    ),
    Placeholder(
        "time",
        re.compile(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})?"),
        "<time>",
    ),
    Placeholder(
        "RFC 7638 thumbprint",
        re.compile(r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Z])(?=[\w-]*[a-z])[\w-]{43}(?![\w-])"),
        "<thumbprint-{n}>",
    ),
    Placeholder("key id", re.compile(r"\b[0-9a-f]{16}\b"), "<kid-{n}>"),
)


def normalise(text: str, seen: dict[str, dict[str, int]], folder: Path) -> str:
    """``text`` with the run's folder and every placeholder's values replaced; ``seen``
    numbers values across the commands of one example."""
    text = text.replace(str(folder / "data"), "$ISA_BROKER_DATA_DIR").replace(str(folder), ".")
    for p in PLACEHOLDERS:
        if "{n}" not in p.replacement:
            text = p.pattern.sub(p.replacement, text)
            continue
        numbers = seen.setdefault(p.name, {})

        def number(m: re.Match[str], numbers: dict[str, int] = numbers, p: Placeholder = p) -> str:
            n = numbers.setdefault(m.group(0), len(numbers) + 1)
            return p.replacement.format(n=n)

        text = p.pattern.sub(number, text)
    return text


# -- finding examples --------------------------------------------------------------------------


class ExampleError(Exception):
    """A marker, block or option that cannot be used, or a command that failed."""


@dataclass
class Example:
    path: Path
    id: str
    #: the lines between the fences (0-based index of the first, and one past the last)
    start: int
    end: int
    lines: list[str]
    setups: tuple[Setup, ...] = ()
    excerpt: tuple[tuple[int, int], ...] | None = None

    @property
    def where(self) -> str:
        return f"{_shown(self.path)}:{self.start}"

    @property
    def commands(self) -> list[str]:
        return [line[2:] for line in self.lines if line.startswith("$ ")]


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _excerpt(spec: str, where: str) -> tuple[tuple[int, int], ...]:
    ranges = []
    for part in spec.split(","):
        first, _, last = part.partition("-")
        try:
            ranges.append((int(first), int(last or first)))
        except ValueError:
            raise ExampleError(f"{where}: excerpt {spec!r} is not like 1-2,6,8") from None
    return tuple(ranges)


def _options(text: str, where: str) -> tuple[tuple[Setup, ...], tuple[tuple[int, int], ...] | None]:
    setups: list[Setup] = []
    excerpt = None
    for option in text.split():
        name, _, value = option.partition("=")
        if name == "setup":
            for s in value.split(","):
                if s not in SETUPS:
                    raise ExampleError(f"{where}: no setup {s!r} (known: {', '.join(SETUPS)})")
                setups.append(SETUPS[s])
        elif name == "excerpt":
            excerpt = _excerpt(value, where)
        else:
            raise ExampleError(f"{where}: unknown option {name!r} (setup=, excerpt=)")
    return tuple(setups), excerpt


def find_examples(path: Path) -> list[Example]:
    """The marked examples of one Markdown file; an unmarked ``console`` block, or a marker
    not followed by a block of commands, raises :class:`ExampleError`."""
    text = path.read_text()
    lines = text.split("\n")
    found: list[Example] = []
    marker: tuple[int, re.Match[str] | None] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        where = f"{_shown(path)}:{i + 1}"
        if m := MARKER.match(line):
            marker = (i, m)
        elif UNCHECKED.match(line):
            marker = (i, None)
        elif line.startswith(FENCE):
            close = next((j for j in range(i + 1, len(lines)) if lines[j] == FENCE), None)
            if close is None:
                raise ExampleError(f"{where}: a fenced block is not closed")
            if line.strip() == FENCE + "console" and marker is None:
                raise ExampleError(
                    f"{where}: a console block without '<!-- example: ID -->' (run and "
                    "checked) or '<!-- example-unchecked: REASON -->' before it"
                )
            if marker is not None and marker[1] is not None:
                m, body = marker[1], lines[i + 1 : close]
                if not body or not body[0].startswith("$ "):
                    raise ExampleError(
                        f"{where}: example {m['id']}: the block must start with '$ '"
                    )
                setups, excerpt = _options(m["options"], where)
                found.append(Example(path, m["id"], i + 1, close, body, setups, excerpt))
            marker = None
            i = close
        elif line.strip() and marker is not None:
            raise ExampleError(f"{where}: an example marker must come just before its block")
        i += 1
    return found


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))] + sorted(
        (ROOT / "deploy").glob("*.md")
    )


# -- the isa-broker command, started fresh or forked from a server -------------------------------

#: ``isa-broker`` as a fresh process of this Python
FRESH_PROCESS = f'#!/bin/sh\nexec "{sys.executable}" -m services.cli "$@"\n'

#: ``isa-broker`` as a client of a CommandServer listening on ``{socket}``: it hands over its
#: arguments, folder, environment and standard streams, and exits with the command's status
CLIENT = """#!{python} -IS
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect({socket!r})
data = json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}}).encode()
data = len(data).to_bytes(4, "big") + data
s.sendall(data[socket.send_fds(s, [data], [0, 1, 2]) :])
reply = b""
while len(reply) < 4:
    chunk = s.recv(4 - len(reply))
    if not chunk:
        sys.exit("isa-broker: the examples' command server went away")
    reply += chunk
sys.exit(int.from_bytes(reply, "big", signed=True))
"""

#: imported once by the server, so that a command forked from it need not import them
PRELOAD = (
    "services.cli",
    "services.core.runtime",
    "services.core.clients",
    "services.core.audit.verify",
    "services.core.audit.sealer",
    "services.core.crypto.keys",
)


class CommandServer:
    """A process that has imported the command's code and forks a child for each
    ``isa-broker`` an example runs; the child takes over the caller's standard streams,
    folder and environment, runs the command's ``main`` and reports its exit status. The
    server is single-threaded (it only accepts and forks), so forking it is safe."""

    def __enter__(self) -> CommandServer:
        self._folder = tempfile.mkdtemp(prefix="isa-ex-")  # short: a socket path is short
        self.socket = os.path.join(self._folder, "s")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ISA_BROKER_")}
        env.update(PYTHONPATH=str(ROOT), PYTHONIOENCODING="utf-8")
        self._proc = subprocess.Popen(  # noqa: S603 - this file, this Python
            [sys.executable, __file__, "--serve", self.socket],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None  # noqa: S101 - stdout=PIPE
        if self._proc.stdout.readline().strip() != "ready":
            self.__exit__()
            raise ExampleError("the examples' command server did not start")
        self.launcher = CLIENT.format(python=sys.executable, socket=self.socket)
        return self

    def __exit__(self, *_: object) -> None:
        self._proc.terminate()
        self._proc.wait(10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        shutil.rmtree(self._folder, ignore_errors=True)


def serve_commands(socket_path: str) -> None:
    """The CommandServer's loop (``regenerate.py --serve SOCKET``)."""
    import importlib
    import signal
    import socket

    for name in PRELOAD:
        importlib.import_module(name)
    from services.cli import main as command

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the children are reaped as they end
    server = socket.socket(socket.AF_UNIX)
    server.bind(socket_path)
    server.listen(64)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        if os.fork() == 0:
            server.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            code = 70
            try:
                code = _one_command(conn, command)
            except BaseException:  # noqa: BLE001 - reported to the caller, as a process would
                import traceback

                traceback.print_exc()
            finally:
                with contextlib.suppress(OSError):
                    conn.sendall(code.to_bytes(4, "big", signed=True))
                os._exit(0)
        conn.close()


def _one_command(conn: Any, command: Callable[[list[str]], int]) -> int:
    """In the forked child: become the caller's ``isa-broker`` process and run it."""
    import json
    import socket

    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    size, payload = int.from_bytes(data[:4], "big"), data[4:]
    while len(payload) < size:
        chunk = conn.recv(size - len(payload))
        if not chunk:
            raise ExampleError("the client went away")
        payload += chunk
    request = json.loads(payload)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["isa-broker", *request["argv"]]
    try:
        code = command(request["argv"])
    except SystemExit as e:  # as the interpreter turns it into a status
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return code


# -- running them ------------------------------------------------------------------------------


def _environment(folder: Path, setups: Iterable[Setup]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ISA_BROKER_") and k != "KAFKA_BOOTSTRAP_SERVERS"
    }
    bin_dir = folder / "bin"
    env.update(
        {
            "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
            "PYTHONPATH": str(ROOT),
            "ISA_BROKER_MODE": "dev",
            "ISA_BROKER_DATA_DIR": str(folder / "data"),
            "ISA_BROKER_PUBLIC_URL": PUBLIC_URL,
            "ISA_BROKER_POLICIES_DIR": str(ROOT / "isa_policies"),
            "NO_COLOR": "1",
        }
    )
    for s in setups:
        env.update(s.env)
    return env


def _prepare(folder: Path, setups: Sequence[Setup], launcher: str) -> dict[str, str]:
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    command = bin_dir / "isa-broker"
    command.write_text(launcher)
    command.chmod(0o755)
    (folder / "docs").symlink_to(ROOT / "docs")
    for s in setups:
        for name, make in s.files.items():
            (folder / name).write_text(make())
    env = _environment(folder, setups)
    for s in setups:
        for line in s.commands:
            _run(line, folder, env)
    return env


def _run(line: str, folder: Path, env: Mapping[str, str]) -> str:
    done = subprocess.run(  # noqa: S603 - the documentation's own commands, in a scratch folder
        ["/bin/sh", "-c", line],
        cwd=folder,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )
    if done.returncode not in USUAL_EXIT_CODES:
        raise ExampleError(f"'{line}' exited with {done.returncode}:\n{done.stdout}")
    return done.stdout


def _paragraphs(lines: list[str]) -> list[list[str]]:
    groups: list[list[str]] = [[]]
    for line in lines:
        if line:
            groups[-1].append(line)
        elif groups[-1]:
            groups.append([])
    return [g for g in groups if g]


def _cut(lines: list[str], ranges: tuple[tuple[int, int], ...]) -> list[str]:
    """The paragraphs ``ranges`` names (1-based, inclusive), ``...`` where some are left out."""
    paragraphs = _paragraphs(lines)
    keep = sorted({n for first, last in ranges for n in range(first, last + 1)})
    out: list[str] = []
    previous = 0
    for n in keep:
        if n > len(paragraphs):
            break
        if n != previous + 1:
            out.append("...")
        elif out:
            out.append("")
        out.extend(paragraphs[n - 1])
        previous = n
    if previous < len(paragraphs):
        out.append("...")
    return out


def render(example: Example, launcher: str = FRESH_PROCESS) -> list[str]:
    """Run the example's commands and return the block as it should read. ``launcher`` is
    the ``isa-broker`` command the example runs: a fresh process, or a client of a
    :class:`CommandServer`."""
    with tempfile.TemporaryDirectory(prefix="isa-broker-example-") as tmp:
        folder = Path(tmp)
        env = _prepare(folder, example.setups, launcher)
        pause = max((s.pause for s in example.setups), default=0.0)
        seen: dict[str, dict[str, int]] = {}
        block: list[str] = []
        commands = example.commands
        if example.excerpt is not None and len(commands) != 1:
            raise ExampleError(f"{example.where}: excerpt= needs an example of one command")
        for n, line in enumerate(commands):
            if n and pause:
                time.sleep(pause)
            output = normalise(_run(line, folder, env), seen, folder)
            printed = [x.rstrip() for x in output.rstrip("\n").split("\n")] if output else []
            if example.excerpt is not None:
                printed = _cut(printed, example.excerpt)
            block += ["$ " + line, *printed]
        return block


@dataclass
class Outcome:
    example: Example
    expected: list[str] | None = None
    error: str | None = None

    @property
    def stale(self) -> bool:
        return self.error is not None or self.expected != self.example.lines

    def report(self) -> str:
        head = f"{self.example.where}: example {self.example.id}"
        if self.error is not None:
            return f"{head}: {self.error}"
        diff = difflib.unified_diff(
            self.example.lines, self.expected or [], "in the docs", "as it runs now", lineterm=""
        )
        return f"{head} differs:\n" + "\n".join(diff)


def _outcome(example: Example, launcher: str) -> Outcome:
    try:
        return Outcome(example, render(example, launcher))
    except (ExampleError, subprocess.TimeoutExpired, OSError) as e:
        return Outcome(example, error=str(e))


def run_all(
    examples: Sequence[Example], *, fresh_processes: bool = False, workers: int | None = None
) -> list[Outcome]:
    """Every example's outcome, several examples at a time. Unless ``fresh_processes``,
    each ``isa-broker`` command is forked from one :class:`CommandServer` instead of
    starting (and importing everything) anew: the same code and output, in a tenth of the
    time."""
    workers = workers or min(8, max(2, os.cpu_count() or 2))
    # the slowest (most commands) first, so that they do not finish last
    order = sorted(examples, key=lambda e: -len(e.commands))
    with contextlib.ExitStack() as stack:
        launcher = FRESH_PROCESS
        if not fresh_processes and order:
            launcher = stack.enter_context(CommandServer()).launcher
        with ThreadPoolExecutor(workers) as pool:
            outcomes = pool.map(lambda e: _outcome(e, launcher), order)
            done = dict(zip(map(id, order), outcomes, strict=True))
    return [done[id(e)] for e in examples]


def write(outcomes: Iterable[Outcome]) -> None:
    """Replace each stale block by what its commands print now, last block first in each
    file so that earlier line numbers stay valid."""
    by_file: dict[Path, list[Outcome]] = {}
    for o in outcomes:
        if o.stale and o.error is None:
            by_file.setdefault(o.example.path, []).append(o)
    for path, changed in by_file.items():
        lines = path.read_text().split("\n")
        for o in sorted(changed, key=lambda o: -o.example.start):
            if lines[o.example.start : o.example.end] != o.example.lines:
                raise ExampleError(f"{o.example.where}: the file changed meanwhile; run again")
            lines[o.example.start : o.example.end] = o.expected or []
        path.write_text("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="report stale examples (default)")
    mode.add_argument("--write", action="store_true", help="rewrite stale examples in place")
    mode.add_argument("--list", action="store_true", help="list the examples and commands")
    parser.add_argument("--only", action="append", metavar="ID", help="only this example")
    parser.add_argument(
        "--fresh-processes",
        action="store_true",
        help="start every isa-broker command as a new process (slower; the same output)",
    )
    parser.add_argument("--serve", metavar="SOCKET", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve_commands(args.serve)
        return 0
    try:
        examples = [e for path in documents() for e in find_examples(path)]
    except ExampleError as error:
        print(f"regenerate: {error}", file=sys.stderr)
        return 2
    if args.only:
        unknown = set(args.only) - {x.id for x in examples}
        if unknown:
            print(f"regenerate: no example {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        examples = [x for x in examples if x.id in args.only]
    if args.list:
        for x in examples:
            print(f"{x.where}\t{x.id}")
            for line in x.commands:
                print(f"    $ {line}")
        return 0
    if not os.access("/bin/sh", os.X_OK):
        print("regenerate: needs /bin/sh", file=sys.stderr)
        return 2
    outcomes = run_all(examples, fresh_processes=args.fresh_processes)
    stale = [o for o in outcomes if o.stale]
    if args.write:
        write(outcomes)
        for o in stale:
            print(o.report() if o.error else f"{o.example.where}: rewrote {o.example.id}")
        print(f"{len(examples)} example(s), {len(stale)} rewritten or failed")
        return 1 if any(o.error for o in stale) else 0
    for o in stale:
        print(o.report(), end="\n\n")
    print(f"{len(examples)} example(s), {len(stale)} stale or failed")
    if stale:
        print("regenerate them with: python docs/examples/regenerate.py --write")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
