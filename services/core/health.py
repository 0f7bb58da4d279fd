"""Liveness and readiness of a running part (the gateway, the router).

Live: the process serves HTTP; a monitor restarts it when not. Ready: it can do its work
now, so a load balancer may send it traffic and an operator sees what is missing. A part is
ready when the store answers and is at the newest schema (no migration pending), Kafka
answers, and, for the router, its consumer is running. Each check answers within a few
seconds; what it reports names the dependency and the kind of failure, never a secret or
a person."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .errors import Unavailable
from .kafka.publisher import Publisher
from .settings import DEV_MODE_WARNING
from .store import Store

#: how long one check may take before it counts as failed
CHECK_SECONDS = 3.0

OK = "ok"


@dataclass(frozen=True)
class Readiness:
    """Each check's answer (``ok``, or what is wrong); ready when every one is ``ok``."""

    checks: Mapping[str, str]

    @property
    def ready(self) -> bool:
        return all(v == OK for v in self.checks.values())

    def body(self) -> dict[str, object]:
        """As the ``/readyz`` endpoints answer."""
        return {"status": "ready" if self.ready else "not_ready", "checks": dict(self.checks)}


def liveness(mode: str) -> dict[str, str]:
    """What the ``/livez`` endpoints answer: ``ok``, and in dev mode that unsafe settings
    are accepted, so that a monitor can tell."""
    if mode == "dev":
        return {"status": "ok", "mode": "dev", "warning": DEV_MODE_WARNING}
    return {"status": "ok", "mode": "production"}


async def _store(store: Store) -> str:
    try:
        current = await asyncio.wait_for(store.schema_is_current(), CHECK_SECONDS)
    except Unavailable as e:
        return str(e)
    except TimeoutError:
        return f"the store did not answer within {CHECK_SECONDS:g} s"
    return OK if current else "schema migrations are pending (run 'isa-broker db upgrade')"


async def _kafka(publisher: Publisher) -> str:
    if await publisher.reachable(CHECK_SECONDS):
        return OK
    return f"Kafka did not answer a metadata request within {CHECK_SECONDS:g} s"


async def readiness(
    store: Store,
    publisher: Publisher | None,
    running: Mapping[str, Callable[[], bool]] | None = None,
) -> Readiness:
    """Check the store and its schema and, given the part's ``publisher``, Kafka, at once;
    ``running``: the part's own tasks by name, each answering whether it still runs."""
    names = ["store"]
    probes = [_store(store)]
    if publisher is not None:
        names.append("kafka")
        probes.append(_kafka(publisher))
    answers = dict(zip(names, await asyncio.gather(*probes), strict=True))
    for name, alive in (running or {}).items():
        answers[name] = OK if alive() else f"the {name} has stopped"
    return Readiness(answers)
