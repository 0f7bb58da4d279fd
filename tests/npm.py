"""``npm ci`` for the Node.js projects the tests use (the OpenID provider, the TypeScript
SDK): exactly what a project's ``package-lock.json`` pins, on first use and again whenever
the lock file changes. A marker in ``node_modules/`` holds the hash of the lock file it was
installed from; a lock file (``.npm-ci.lock``) keeps concurrent test processes from
installing at the same time."""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
from pathlib import Path

INSTALL_TIMEOUT_SECONDS = 600.0


class NpmError(RuntimeError):
    """``npm ci`` could not be run, or failed."""


def _lock_hash(project: Path) -> str:
    return hashlib.sha256((project / "package-lock.json").read_bytes()).hexdigest()


def _installed(project: Path) -> bool:
    marker = project / "node_modules" / ".installed-from"
    return marker.is_file() and marker.read_text() == _lock_hash(project)


def npm_ci(project: Path) -> bool:
    """``npm ci`` in ``project`` unless its ``node_modules`` already holds what the lock file
    pins. Returns whether it ran."""
    if _installed(project):
        return False
    with open(project / ".npm-ci.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed(project):  # another process installed it while this one waited
            return False
        npm = shutil.which("npm")
        if npm is None:
            raise NpmError("npm is not installed")
        command = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
        try:
            done = subprocess.run(  # noqa: S603
                command,
                cwd=project,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise NpmError(f"npm ci took over {INSTALL_TIMEOUT_SECONDS:.0f} s in {project}") from e
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
            raise NpmError(f"npm ci failed in {project}:\n{tail}")
        (project / "node_modules" / ".installed-from").write_text(_lock_hash(project))
    return True
