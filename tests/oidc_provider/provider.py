"""Runs ``server.mjs`` (panva/oidc-provider) as a child process on a loopback port.

- Installation: ``npm ci`` into ``node_modules/`` beside this module, exactly what
  ``package-lock.json`` pins, on first use and again whenever the lock file changes
  (:mod:`tests.npm`).
- Keys and client secrets are the caller's, passed in the environment for each start, so a
  test decides which keys sign and which are published. A rotation is a restart on the same
  port (so under the same issuer) with another JWK Set: what a provider's operator does.
- The child is started from the calling thread and gets SIGTERM when that thread ends
  (PR_SET_PDEATHSIG on Linux): call ``start`` from the thread that outlives the provider.

Errors: ``OpenIDProviderError`` (a ``RuntimeError``) for anything that cannot be done; a
start failure carries the tail of the provider's log.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
from joserfc.jwk import RSAKey

from services.core.childproc import bind_to_parent, free_port
from tests.npm import NpmError, npm_ci

HERE = Path(__file__).resolve().parent
SERVER = HERE / "server.mjs"
MIN_NODE_MAJOR = 20
START_TIMEOUT_SECONDS = 30.0


class OpenIDProviderError(RuntimeError):
    """The provider could not be installed, started or stopped."""


def prerequisites() -> str | None:
    """Why the provider cannot run here (a sentence for a skip message), or None if it can."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(name for name, path in (("node", node), ("npm", npm)) if not path)
        return f"{missing} not installed; the OpenID provider test runs oidc-provider on Node.js"
    try:
        version = subprocess.run(  # noqa: S603
            [node, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        return f"{node} --version failed: {e}"
    found = re.match(r"v(\d+)\.", version)
    if found is None or int(found.group(1)) < MIN_NODE_MAJOR:
        return f"oidc-provider needs Node.js {MIN_NODE_MAJOR} or later; {node} is {version}"
    return None


def install() -> bool:
    """``npm ci`` beside this module unless ``node_modules`` already holds what the lock
    file pins (:func:`tests.npm.npm_ci`). Returns whether it ran."""
    try:
        return npm_ci(HERE)
    except NpmError as e:
        raise OpenIDProviderError(str(e)) from e


def signing_key(kid: str) -> RSAKey:
    """A provider signing key (RS256, the algorithm every OpenID provider supports)."""
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


@dataclass(frozen=True)
class ProviderClient:
    """A client registered at the provider: client credentials grant, client_secret_basic."""

    client_id: str
    client_secret: str
    scope: str


class OpenIDProvider:
    """The provider at ``http://127.0.0.1:<port>``, issuing JWT access tokens for the one
    ``resource`` (it becomes their ``aud``) with at most ``scopes`` to ``clients``."""

    def __init__(
        self,
        *,
        resource: str,
        scopes: str,
        clients: Sequence[ProviderClient],
        log_path: Path,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.resource = resource
        self.scopes = scopes
        self.clients = tuple(clients)
        self.log_path = log_path
        self.keys: tuple[RSAKey, ...] = ()
        self.starts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    async def start(self, keys: Sequence[RSAKey]) -> None:
        """Start with ``keys`` (the first one signs; all are published) and wait until the
        discovery document is served."""
        if self.running:
            raise OpenIDProviderError("the provider is already running")
        node = shutil.which("node")
        if node is None:
            raise OpenIDProviderError("node is not installed")
        self.keys = tuple(keys)
        env = {
            **os.environ,
            "OIDC_PROVIDER_JWKS": json.dumps({"keys": [k.as_dict(private=True) for k in keys]}),
            "OIDC_PROVIDER_CLIENTS": json.dumps(
                [
                    {"client_id": c.client_id, "client_secret": c.client_secret, "scope": c.scope}
                    for c in self.clients
                ]
            ),
            "OIDC_PROVIDER_RESOURCE": self.resource,
            "OIDC_PROVIDER_SCOPES": self.scopes,
        }
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed by stop()
        self._process = subprocess.Popen(  # noqa: S603
            [node, str(SERVER), str(self.port)],
            cwd=HERE,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=bind_to_parent,
        )
        self.starts += 1
        await self._wait_until_serving()

    async def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        url = self.issuer + "/.well-known/openid-configuration"
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                if self._process is None or self._process.poll() is not None:
                    raise OpenIDProviderError(f"the provider exited:\n{self.log_tail()}")
                try:
                    if (await client.get(url)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    await self.stop()
                    raise OpenIDProviderError(
                        f"the provider did not serve {url} within "
                        f"{START_TIMEOUT_SECONDS:.0f} s:\n{self.log_tail()}"
                    )
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, 10)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait, 10)
        if self._log is not None:
            self._log.close()
            self._log = None

    async def rotate(self, keys: Sequence[RSAKey]) -> None:
        """Restart under the same issuer with another JWK Set."""
        await self.stop()
        await self.start(keys)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
