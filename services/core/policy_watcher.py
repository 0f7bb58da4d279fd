"""Reload agreements without a restart. A watcher notices changed files under the policies
folder, loads the whole set, and swaps the engine only if every file is valid; a bad file is
refused with a precise error and the previous set stays in force. Messages already accepted
are re-checked against whatever set is in force when they are delivered.

It lives beside the runtime it changes, not in the ``isa`` package, which knows nothing of
the store or the runtime."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from .errors import ConfigurationError
from .isa.engine import IsaEngine
from .isa.loader import load_policies
from .runtime import Runtime

log = logging.getLogger("isa_broker.policies")

Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(policies_dir: Path) -> Fingerprint:
    files = [policies_dir / "parties.yaml", *sorted((policies_dir / "agreements").glob("*.yaml"))]
    out = []
    for f in files:
        try:
            st = f.stat()
        except FileNotFoundError:
            continue
        out.append((str(f), st.st_mtime_ns, st.st_size))
    return tuple(out)


class PolicyWatcher:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._seen = fingerprint(runtime.settings.policies_dir)
        self.last_error: str | None = None

    async def reload(self) -> bool:
        """Load the set now; swap it in if valid. Returns whether the engine changed."""
        s = self.runtime.settings
        self._seen = fingerprint(s.policies_dir)
        try:
            policies = await asyncio.to_thread(
                load_policies,
                s.policies_dir,
                s.schemas_dir,
                refuse_fictional=s.mode == "production",
            )
        except ConfigurationError as e:
            self.last_error = e.detail
            log.error("agreements not reloaded, the previous set stays in force: %s", e.detail)
            await self.runtime.store.audit(
                "policies_reload_refused", detail={"error": e.detail[:2000]}
            )
            return False
        self.last_error = None
        self.runtime.engine = IsaEngine(policies)
        refs = [a.ref for a in policies.agreements]
        log.warning("agreements reloaded: %s", ", ".join(refs))
        await self.runtime.store.audit("policies_reloaded", detail={"agreements": refs})
        return True

    async def run(self) -> None:
        interval = self.runtime.settings.policies_reload_seconds
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            if fingerprint(self.runtime.settings.policies_dir) != self._seen:
                await self.reload()
