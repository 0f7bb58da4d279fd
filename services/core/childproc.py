"""Child processes that the embedded default and the tests start (the embedded Kafka-protocol
broker, the embedded PostgreSQL server): a free loopback port, and a child bound to its
parent's life so that a crashed or killed parent never leaves an orphan server behind."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
import sys


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on at the moment of asking."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def bind_to_parent() -> None:  # pragma: no cover - runs in the child before exec
    """``preexec_fn`` for ``subprocess.Popen``: the child gets SIGTERM when its parent dies
    (PR_SET_PDEATHSIG). It runs after ``Popen``'s ``user=`` switch, which would clear it."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def stop(proc: subprocess.Popen[bytes] | None, timeout: float, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to a child still running and wait ``timeout`` seconds; SIGKILL it if it
    has not exited by then."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
