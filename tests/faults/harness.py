"""Harness of the fault-injection suite: a counting webhook receiver farm, a load generator
that sends release notices through the real gateway, the verification report, and helpers
that start, SIGKILL and restart the product's processes.

Everything here is synthetic: persons are invented from their index, and nothing that
identifies a person is printed (reports carry counts and message ids only)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import httpx
import uvicorn
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.core.kafka.embedded import free_port
from services.core.timeliness.events import EVENT_TYPES
from tests.factories import release_notice

CLI = [sys.executable, "-m", "services.cli"]
SENDER = "hmp-northgate"
MESSAGE_TYPES = ("release-notice", "licence-recall", "dip-breach")
SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
#: CloudEvent types of the broker's own events (escalations, DIP reminders and expiries)
BROKER_EVENT_TYPES = frozenset(EVENT_TYPES.values())

# -- receivers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Behaviour:
    """How a receiver answers: ``ok`` (204), ``fail`` (``status``), ``retry_after``
    (``status`` with ``Retry-After: seconds``) or ``slow`` (sleeps ``seconds``, then 204)."""

    kind: Literal["ok", "fail", "retry_after", "slow"] = "ok"
    status: int = 204
    seconds: float = 0.0

    @classmethod
    def ok(cls) -> Behaviour:
        return cls("ok", 204)

    @classmethod
    def fail(cls, status: int = 500) -> Behaviour:
        return cls("fail", status)

    @classmethod
    def retry_after(cls, status: int = 429, seconds: int = 2) -> Behaviour:
        return cls("retry_after", status, float(seconds))

    @classmethod
    def slow(cls, seconds: float) -> Behaviour:
        return cls("slow", 204, seconds)

    def __str__(self) -> str:
        if self.kind == "ok":
            return "ok"
        if self.kind == "fail":
            return f"fail({self.status})"
        if self.kind == "retry_after":
            return f"retry_after({self.status}, {self.seconds:g}s)"
        return f"slow({self.seconds:g}s)"


@dataclass(frozen=True)
class Arrival:
    """One request a receiver accepted (answered 2xx)."""

    index: int  # global arrival order, counted when the request came in
    party: str
    webhook_id: str  # the stable delivery id
    message_id: str  # the CloudEvent id, which is the message id
    signature_ok: bool | None  # None: no secret known for the party, header presence only
    at: float = 0.0  # time.monotonic() when it was accepted


class ReceiverFarm:
    """One HTTP server standing in for every party's webhook endpoint at
    ``POST /hooks/{party}``; it counts what arrives and answers as each party's
    :class:`Behaviour` says (changeable while running)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrivals: list[Arrival] = []
        self.refused: Counter[str] = Counter()
        self.bad_signatures: Counter[str] = Counter()
        self.broker_events: Counter[str] = Counter()
        self.secrets: dict[str, str] = {}
        self._pairs: set[tuple[str, str]] = set()
        self._behaviours: dict[str, Behaviour] = {}
        self._counter = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    def url(self, party: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{party}"

    def set_behaviour(self, party: str, behaviour: Behaviour) -> None:
        self._behaviours[party] = behaviour

    def behaviour(self, party: str) -> Behaviour:
        return self._behaviours.get(party, Behaviour.ok())

    def received_pairs(self) -> set[tuple[str, str]]:
        """(party, message id) of everything received so far."""
        return set(self._pairs)

    def received_by(self, party: str) -> int:
        return len({a.message_id for a in self.arrivals if a.party == party})

    def _check_signature(self, party: str, body: bytes, headers: dict[str, str]) -> bool | None:
        if not all(
            headers.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
        ):
            return False
        secret = self.secrets.get(party)
        if secret is None:
            return None
        try:
            Webhook(secret).verify(body, headers, json_parse=False)
        except WebhookVerificationError:
            return False
        return True

    async def _hook(self, request: Request) -> Response:
        party = request.path_params["party"]
        self._counter += 1
        index = self._counter
        behaviour = self.behaviour(party)
        body = await request.body()
        if behaviour.kind == "slow":
            await asyncio.sleep(behaviour.seconds)
        elif behaviour.kind == "fail":
            self.refused[party] += 1
            return Response(status_code=behaviour.status)
        elif behaviour.kind == "retry_after":
            self.refused[party] += 1
            return Response(
                status_code=behaviour.status,
                headers={"Retry-After": str(int(behaviour.seconds))},
            )
        headers = {k.lower(): v for k, v in request.headers.items()}
        signature_ok = self._check_signature(party, body, headers)
        if signature_ok is False:
            self.bad_signatures[party] += 1
        try:
            event = json.loads(body)
            message_id = str(event["id"])
        except (ValueError, KeyError, TypeError):
            event, message_id = {}, "<unreadable>"
        if event.get("type") in BROKER_EVENT_TYPES:
            # an escalation or DIP reminder raised by the broker itself (the load's release
            # notices carry acknowledgement duties): not one of the messages under test
            self.broker_events[party] += 1
            return Response(status_code=204)
        self.arrivals.append(
            Arrival(
                index,
                party,
                headers.get("webhook-id", ""),
                message_id,
                signature_ok,
                time.monotonic(),
            )
        )
        self._pairs.add((party, message_id))
        return Response(status_code=204)

    async def wait_until(
        self,
        expected: set[tuple[str, str]],
        timeout: float,
        give_up: Callable[[], str | None] | None = None,
    ) -> bool:
        """Wait until every expected (party, message id) pair has arrived; False on timeout,
        or as soon as ``give_up`` names a reason (e.g. a process that died)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not expected <= self._pairs:
            if loop.time() > deadline or (give_up is not None and give_up() is not None):
                return False
            await asyncio.sleep(0.2)
        return True

    async def start(self) -> ReceiverFarm:
        app = Starlette(routes=[Route("/hooks/{party}", self._hook, methods=["POST"])])
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            backlog=2048,
            timeout_keep_alive=30,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            self._server.force_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10)


# -- load ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    """A message the gateway answered 202 for."""

    message_id: str
    person: int
    seq: int  # per-person sequence number, from 0
    recipients: tuple[str, ...]
    replayed: bool  # the 202 came from an Idempotency-Key replay


def synthetic_notice(person: int, seq: int) -> dict[str, Any]:
    """A release notice about synthetic person ``person`` (identifiers invented from the
    index); ``seq`` varies the release date and some flags, so recipients vary a little."""
    body = release_notice(days_ahead=1 + (seq * 7 + person) % 60)
    body["person"] = {
        "prison_number": f"F{person % 10000:04d}ZZ",
        "pnc_id": f"99/{person % 10_000_000}Z",
        "crn": f"Z{person % 1_000_000:06d}",
        "given_name": f"Synthetic{person}",
        "family_name": "Loadperson",
        "date_of_birth": (dt.date(1970, 1, 1) + dt.timedelta(days=person * 37)).isoformat(),
        "gender": "not_stated",
    }
    body["risk"]["domestic_abuse"] = person % 4 != 0
    body["victim_contact_scheme"] = seq % 3 != 1
    return body


class LoadError(Exception):
    """A message could not be sent within the retry budget, or was refused."""


class LoadGenerator:
    """Sends ``messages`` release notices about ``persons`` synthetic persons with
    ``concurrency`` workers. Worker w owns persons w, w+C, w+2C, ... and sends them round by
    round, so each person's messages go strictly one after another (the next only after the
    previous was answered 202) and are spread over the whole run. Every message has its own
    Idempotency-Key; transport errors and 5xx answers retry the same request with the same
    key, so a gateway killed mid-request neither loses nor duplicates an acceptance."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        messages: int = 2000,
        persons: int | None = None,
        concurrency: int = 8,
        retry_for: float = 60.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = (client_id, client_secret)
        self.messages = messages
        self.persons = persons or max(1, min(200, messages // 10))
        self.concurrency = max(1, min(concurrency, self.persons))
        self.retry_for = retry_for
        self.accepted: list[Accepted] = []
        self.retries = 0
        self.replays = 0
        self.token_refreshes = 0
        self.elapsed = 0.0
        self._run = uuid.uuid4().hex[:12]
        self._token: str | None = None
        self._token_lock = asyncio.Lock()
        self._rng = random.Random(0)

    def per_person(self, person: int) -> int:
        base, extra = divmod(self.messages, self.persons)
        return base + (1 if person < extra else 0)

    async def _fetch_token(self, http: httpx.AsyncClient, stale: str | None) -> str:
        async with self._token_lock:
            if self._token is not None and self._token != stale:
                return self._token
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.retry_for
            while True:
                try:
                    r = await http.post(
                        self.base_url + "/oauth/token",
                        data={"grant_type": "client_credentials"},
                        auth=self._auth,
                    )
                    if r.status_code == 200:
                        self._token = str(r.json()["access_token"])
                        self.token_refreshes += 1
                        return self._token
                    if r.status_code < 500:
                        raise LoadError(f"token endpoint answered {r.status_code}: {r.text[:200]}")
                except httpx.TransportError:
                    pass
                if loop.time() > deadline:
                    raise LoadError("no access token within the retry budget")
                await asyncio.sleep(self._rng.uniform(0.1, 0.5))

    async def _send(self, http: httpx.AsyncClient, person: int, seq: int) -> Accepted:
        payload = synthetic_notice(person, seq)
        key = f"faults-{self._run}-{person}-{seq}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_for
        last = ""
        while True:
            token = self._token or await self._fetch_token(http, None)
            try:
                r = await http.post(
                    self.base_url + "/v1/messages/release-notice",
                    json=payload,
                    headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
                )
            except httpx.TransportError as e:
                last = type(e).__name__
            else:
                if r.status_code == 202:
                    body = r.json()
                    replayed = r.headers.get("idempotent-replayed") == "true"
                    self.replays += replayed
                    return Accepted(
                        str(body["id"]),
                        person,
                        seq,
                        tuple(sorted(str(x["party"]) for x in body["recipients"])),
                        replayed,
                    )
                if r.status_code == 401:  # expired, or keys changed: a new token, then again
                    await self._fetch_token(http, token)
                    last = "HTTP 401"
                elif r.status_code < 500:
                    raise LoadError(
                        f"message {seq} of person {person} refused: HTTP {r.status_code} "
                        f"{r.text[:300]}"
                    )
                else:
                    last = f"HTTP {r.status_code}"
            self.retries += 1
            if loop.time() > deadline:
                raise LoadError(
                    f"message {seq} of person {person} not accepted within "
                    f"{self.retry_for:g}s (last: {last})"
                )
            await asyncio.sleep(self._rng.uniform(0.1, 0.5))

    async def _worker(self, w: int) -> None:
        owned = list(range(w, self.persons, self.concurrency))
        limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
        async with httpx.AsyncClient(timeout=10.0, limits=limits) as http:
            for seq in range(max((self.per_person(p) for p in owned), default=0)):
                for person in owned:
                    if seq < self.per_person(person):
                        self.accepted.append(await self._send(http, person, seq))

    async def run(self) -> list[Accepted]:
        started = time.monotonic()
        try:
            await asyncio.gather(*(self._worker(w) for w in range(self.concurrency)))
        finally:
            self.elapsed = time.monotonic() - started
        return self.accepted


# -- verification ----------------------------------------------------------------------------


def expected_pairs(accepted: Iterable[Accepted], subscribed: set[str]) -> set[tuple[str, str]]:
    """(party, message id) for every accepted message and every subscribed recipient."""
    return {(p, a.message_id) for a in accepted for p in a.recipients if p in subscribed}


def _inversions(seqs: list[int]) -> int:
    return sum(1 for i in range(len(seqs)) for j in range(i + 1, len(seqs)) if seqs[i] > seqs[j])


@dataclass
class Report:
    scenario: str
    accepted: int
    expected: int
    delivered: int
    received: int
    duplicates: int
    lost: int
    unentitled: int
    unknown: int  # received message ids the load was never answered 202 for
    order_violations: int
    refused: int
    bad_signatures: int
    wall_seconds: float
    lost_by_party: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        scenario: str,
        accepted: list[Accepted],
        farm: ReceiverFarm,
        subscribed: set[str],
        wall_seconds: float,
        started: float | None = None,
    ) -> Report:
        """``started``: time.monotonic() when the load began, for the delivery timeline."""
        by_id = {a.message_id: a for a in accepted}
        expected = expected_pairs(accepted, subscribed)
        arrivals = list(farm.arrivals)
        got = {(a.party, a.message_id) for a in arrivals}
        distinct = {(a.party, a.webhook_id) for a in arrivals}
        missing = expected - got
        lost_by_party = Counter(p for p, _ in missing)
        unentitled = unknown = 0
        for party, message_id in got:
            message = by_id.get(message_id)
            if message is None:
                unknown += 1
            elif party not in message.recipients:
                unentitled += 1
        first: dict[tuple[str, str], int] = {}
        for a in arrivals:  # a slow answer is recorded late, so take the smallest index
            key = (a.party, a.message_id)
            first[key] = min(first.get(key, a.index), a.index)
        seqs: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
        for (party, message_id), index in first.items():
            message = by_id.get(message_id)
            if message is not None:
                seqs[(party, message.person)].append((index, message.seq))
        violations = sum(_inversions([s for _, s in sorted(v)]) for v in seqs.values())
        notes = []
        if started is not None and arrivals:
            times = sorted(a.at for a in arrivals)
            gap = max((b - a for a, b in zip([started, *times], times, strict=False)), default=0)
            recent = sum(1 for t in times if t > times[-1] - 10)
            notes.append(
                f"deliveries: first {times[0] - started:.1f}s, last {times[-1] - started:.1f}s "
                f"after the load started; longest pause between two {gap:.1f}s; "
                f"{recent} in the last 10s ({len(expected & got) / max(wall_seconds, 0.1):.0f}/s "
                f"overall)"
            )
        return cls(
            scenario=scenario,
            accepted=len(by_id),
            expected=len(expected),
            delivered=len(expected & got),
            received=len(arrivals),
            duplicates=len(arrivals) - len(distinct),
            lost=len(missing),
            unentitled=unentitled,
            unknown=unknown,
            order_violations=violations,
            refused=sum(farm.refused.values()),
            bad_signatures=sum(farm.bad_signatures.values()),
            wall_seconds=wall_seconds,
            lost_by_party=dict(sorted(lost_by_party.items())),
            notes=notes,
        )

    def line(self) -> str:
        return (
            f"FAULTS {self.scenario:<38} accepted={self.accepted} expected={self.expected} "
            f"delivered={self.delivered} duplicates={self.duplicates} lost={self.lost} "
            f"unentitled={self.unentitled} unknown={self.unknown} "
            f"order_violations={self.order_violations} refused={self.refused} "
            f"bad_signatures={self.bad_signatures} wall={self.wall_seconds:.1f}s"
        )

    def print(self, scenario_name: str | None = None, out: TextIO | None = None) -> None:
        if scenario_name is not None:
            self.scenario = scenario_name
        stream = out or sys.stdout
        stream.write("\n" + self.line() + "\n")
        if self.lost_by_party:
            stream.write(f"       lost by party: {self.lost_by_party}\n")
        for note in self.notes:
            stream.write(f"       {note}\n")
        stream.flush()

    def problems(self) -> list[str]:
        out = []
        if self.lost:
            out.append(f"{self.lost} of {self.expected} deliveries lost {self.lost_by_party}")
        if self.unentitled:
            out.append(f"{self.unentitled} deliveries to parties not entitled")
        if self.unknown:
            out.append(f"{self.unknown} deliveries of messages never answered 202")
        if self.order_violations:
            out.append(f"{self.order_violations} per-person order inversions")
        if self.bad_signatures:
            out.append(f"{self.bad_signatures} deliveries with a missing or bad signature")
        return out

    def assert_ok(self) -> None:
        problems = self.problems()
        assert not problems, f"{self.scenario}: " + "; ".join(problems) + "\n" + self.line()


# -- processes -------------------------------------------------------------------------------


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """SIGTERM the child when the test process dies, however it dies (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Proc:
    """A product process (``python -m services.cli ...``), its output in ``log_path``."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def start(self) -> Proc:
        assert not self.running, f"{self.name} is already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- start #{self.starts} at {time.strftime('%X')} ---\n".encode())
            log.flush()
            self.popen = subprocess.Popen(  # noqa: S603 - our own CLI, no shell
                [*CLI, *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,  # noqa: PLW1509
            )
        return self

    def kill9(self) -> None:
        """SIGKILL: no clean-up of any kind, as a crash or an OOM kill."""
        assert self.popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait()

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no output)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


async def wait_healthy(base_url: str, timeout: float = 60.0, proc: Proc | None = None) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with httpx.AsyncClient(timeout=2.0) as http:
        while loop.time() < deadline:
            if proc is not None and proc.popen is not None and proc.popen.poll() is not None:
                raise AssertionError(f"{proc.name} exited with {proc.popen.returncode}")
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(base_url + "/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError(f"{base_url}/healthz did not answer 200 within {timeout:g}s")


async def create_client(env: dict[str, str], party: str) -> dict[str, str] | None:
    """``isa-broker clients create --party X``: its credentials, or None when refused."""
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "clients",
        "create",
        "--party",
        party,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        return None
    creds: dict[str, str] = json.loads(out)
    return creds


def parties(policies_dir: Path | None = None) -> list[str]:
    """Every party in the register."""
    import yaml

    path = (policies_dir or Path(__file__).resolve().parents[2] / "isa_policies") / "parties.yaml"
    return [str(p["id"]) for p in yaml.safe_load(path.read_text())["parties"]]


async def subscribe_all(
    base_url: str, credentials: dict[str, dict[str, str]], farm: ReceiverFarm
) -> set[str]:
    """Subscribe every party whose client may manage subscriptions to every message type
    (release notices only if the gateway refuses the others) at its farm URL. Returns the
    subscribed parties; their signing secrets go to the farm."""
    subscribed: set[str] = set()
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as http:
        for party, creds in sorted(credentials.items()):
            r = await http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(creds["client_id"], creds["client_secret"]),
            )
            r.raise_for_status()
            auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
            for types in (list(MESSAGE_TYPES), ["release-notice"]):
                r = await http.post(
                    "/v1/subscriptions",
                    json={"message_types": types, "webhook": {"url": farm.url(party)}},
                    headers=auth,
                )
                if r.status_code == 201:
                    farm.secrets[party] = str(r.json()["secret"])
                    subscribed.add(party)
                    break
                assert 400 <= r.status_code < 500, f"subscribing {party}: {r.status_code}"
    return subscribed


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            # the command name may hold spaces and parentheses: split after the last ')'
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                out.append(int(entry.name))
    return out


def broker_pid(data_dir: Path, dev_pid: int) -> int | None:
    """The embedded broker's pid: from ``<data_dir>/broker.pid`` when the product writes it,
    else the child of the dev process whose command line names tansu. Only a tansu process
    that is a child of the dev process is ever returned (a stale pid file names nothing)."""
    children = child_pids(dev_pid)

    def is_broker(pid: int) -> bool:
        try:
            return pid in children and b"tansu" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False

    pid_file = data_dir / "broker.pid"
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text().strip())
        if is_broker(pid):
            return pid
    return next((c for c in children if is_broker(c)), None)


async def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.05
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(poll)
