"""``isa-broker demo``: a prison posts an early (ECSL) release notice for a domestic-abuse
perpetrator with two days' notice; each entitled partner receives its own projection, at a
demo webhook receiver or, for the police IOM team, from its own Kafka topic, encrypted to the
team's registered public key; a party whose agreement has lapsed receives nothing; a post that
no agreement covers is refused. Every name and identifier is synthetic."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

from services.core.clients import create_client
from services.core.crypto import recipient
from services.core.scopes import IG_AUDIT_SCOPE
from services.core.webhooks import signing
from services.system import System, ensure_demo_clients, settings_for_local

from .agency import AgencyClient
from .receivers import Receivers

PRISON = "hmp-northgate"
ENTITLED = [
    "eastborough-vawg",
    "eastborough-vlo",
    "eastborough-housing",
    "eastborough-recovery",
    "eastborough-police-iom",
]
#: consumes its projections from its own Kafka topic, encrypted to its public key (JWE)
KAFKA_PARTY = "eastborough-police-iom"
#: Subscribed, but their agreements are expired (youth justice) or still draft (mental health).
NOT_ENTITLED = ["westshire-youth-justice", "eastborough-mental-health"]


def release_notice(today: dt.date) -> dict[str, Any]:
    return {
        "person": {
            "prison_number": "A0000DM",
            "pnc_id": "26/000001D",
            "crn": "D000001",
            "given_name": "Demo",
            "family_name": "Person-One",
            "date_of_birth": "1988-04-01",
            "gender": "male",
        },
        "release": {
            "date": (today + dt.timedelta(days=2)).isoformat(),
            "conditional_release_date": (today + dt.timedelta(days=60)).isoformat(),
            "type": "ecsl",
            "establishment": "HMP Northgate (fictional)",
        },
        "destination": {
            "no_fixed_abode": True,
            "local_authority": "Eastborough",
            "probation_delivery_unit": "Eastborough PDU",
        },
        "risk": {
            "rosh_level": "high",
            "domestic_abuse": True,
            "mappa": {"category": "1", "level": "1"},
        },
        "licence_conditions": {
            "exclusion_zones": [
                {"description": "Must not enter the Example Park estate", "area": "ZZ9"}
            ],
            "non_contact": True,
            "electronic_monitoring": True,
        },
        "resettlement_needs": {
            "accommodation": True,
            "mental_health": True,
            "opioid_substitution_therapy": {"medication": "methadone", "daily_dose_mg": 30},
        },
        "victim_contact_scheme": True,
    }


@dataclass
class Row:
    party: str
    received: bool
    fields: list[str]
    signature_ok: bool | None
    note: str = ""


def _leaves(data: Any, prefix: str = "") -> list[str]:
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in _leaves(v, f"{prefix}{k}.")]
    return [prefix.rstrip(".")]


def grouped(paths: list[str]) -> str:
    """person.given_name, person.family_name -> person{given_name,family_name}; past ten
    fields only the group sizes: person:7 release:4."""
    groups: dict[str, list[str]] = {}
    for path in sorted(paths):
        head, _, rest = path.partition(".")
        groups.setdefault(head, []).append(rest)
    if len(paths) > 10:
        return " ".join(f"{head}:{len(rests)}" for head, rests in groups.items())
    return " ".join(
        head if rests == [""] else f"{head}{{{','.join(rests)}}}" for head, rests in groups.items()
    )


async def run_demo(
    data_dir: Path | None = None,
    out: Any = print,
    inspect: Callable[[System], Awaitable[None]] | None = None,
    **overrides: Any,
) -> bool:
    """Run the scenario on a fresh embedded system. Returns True when every check passed.
    ``inspect`` is awaited with the running system once the scenario is over (tests read
    the broker's topics there). ``overrides`` are Settings fields (the tests run the demo on
    an Apache Kafka cluster with them)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="isa-broker-demo-") as tmp:
        settings = settings_for_local(
            data_dir or Path(tmp),
            relay_poll_seconds=0.2,
            webhook_retry_schedule=(0, 0.2, 0.5, 1),
            **overrides,
        )
        receivers = await Receivers().start()
        system = System(settings)
        try:
            await system.start()
            assert system.runtime is not None  # noqa: S101
            creds = await ensure_demo_clients(system.runtime)
            out(
                f"isa-broker demo: gateway {system.gateway_url}, "
                f"Kafka {system.bootstrap_servers}, store {settings.resolved_database_url}"
            )
            clients = {
                p: AgencyClient(system.gateway_url, c["client_id"], c["client_secret"])
                for p, c in creds.items()
            }
            secrets = {}
            # the IOM team registers its public key and consumes its own topic
            iom_key, iom_public = recipient.generate_key(f"{KAFKA_PARTY}-demo")
            r = await clients[KAFKA_PARTY].request(
                "POST", "/v1/encryption-keys", json={"jwk": iom_public}
            )
            r.raise_for_status()
            r = await clients[KAFKA_PARTY].request(
                "POST",
                "/v1/subscriptions",
                json={"message_types": ["release-notice"], "channel": "kafka"},
            )
            r.raise_for_status()
            iom_topic = r.json()["kafka_topic"]
            # on a cluster whose principals the broker manages, the team reads as itself
            iom_credential = r.json().get("kafka_credential")
            for party in [*ENTITLED, *NOT_ENTITLED]:
                if party == KAFKA_PARTY:
                    continue
                sub = await clients[party].subscribe(["release-notice"], receivers.url(party))
                secrets[party] = sub["secret"]
                receivers.trust(party, sub["secret"])

            today = dt.date.today()
            r = await clients[PRISON].publish("release-notice", release_notice(today))
            ok = r.status_code == 202
            accepted = r.json()
            out(
                f"\n1. {PRISON} posts an ECSL early release notice (release in 2 days, "
                f"domestic-abuse flag): HTTP {r.status_code}, message {accepted.get('id')}"
            )
            if ok:
                refs = ", ".join(f"{a['id']} v{a['version']}" for a in accepted["agreements"])
                out(f"   decision: {len(accepted['recipients'])} recipients under {refs}")

            arrived = await receivers.wait_for(set(ENTITLED) - {KAFKA_PARTY}, timeout=30)
            ok = ok and arrived
            rows = []
            now = int(time.time())
            for party in [*ENTITLED, *NOT_ENTITLED]:
                if party == KAFKA_PARTY:
                    rows.append(
                        await _from_own_topic(system, iom_topic, iom_key, accepted, iom_credential)
                    )
                    continue
                got = receivers.for_party(party)
                if not got:
                    rows.append(Row(party, False, [], None))
                    continue
                req = got[0]
                try:
                    signing.verify(
                        secrets[party],
                        req.headers["webhook-id"],
                        int(req.headers["webhook-timestamp"]),
                        req.body,
                        req.headers["webhook-signature"],
                        now,
                    )
                    sig = True
                except Exception:  # noqa: BLE001 - reported in the table
                    sig = False
                rows.append(Row(party, True, _leaves(json.loads(req.body)["data"]), sig))
            await _wait_settled(system, accepted.get("id"))

            out(
                "\n2. What each partner received (projections; webhook signatures checked, "
                f"{KAFKA_PARTY}'s Kafka record decrypted with its own key, the broker's "
                "signature on it checked):"
            )
            width = max(len(r.party) for r in rows)
            out(f"   {'recipient'.ljust(width)}  check      fields received")
            withheld = {
                r["party"]: sorted({w["rule"] for w in r["withheld"] if w["kind"] == "hard_block"})
                for r in accepted.get("recipients", [])
            }
            for row in rows:
                verdict = {True: "valid", False: "INVALID", None: "-"}[row.signature_ok]
                if row.party == KAFKA_PARTY and row.received:
                    verdict = "decrypted" if row.signature_ok else "UNREADABLE"
                fields = (
                    f"{len(row.fields):>2}: {grouped(row.fields)}"
                    if row.received
                    else "nothing (agreement expired or still draft)"
                )
                out(f"   {row.party.ljust(width)}  {verdict:<9}  {fields}")
                if withheld.get(row.party):
                    out(
                        f"   {'':{width}}             hard blocks: {', '.join(withheld[row.party])}"
                    )
            expected = {r["party"]: set(r["fields"]) for r in accepted.get("recipients", [])}
            for row in rows:
                if row.party in ENTITLED:
                    ok = ok and row.received and row.signature_ok is True
                    ok = ok and set(row.fields) == expected.get(row.party)
                else:
                    ok = ok and not row.received
            vawg = next(r for r in rows if r.party == "eastborough-vawg")
            leaked = [
                f
                for f in vawg.fields
                if f.startswith(("resettlement_needs", "destination.address"))
            ]
            ok = ok and not leaked

            refused = await clients[PRISON].publish(
                "release-notice", release_notice(today), purpose="youth-transition"
            )
            problem = refused.json()
            out(
                f"\n3. {PRISON} posts the notice for Westshire youth transition, whose agreement "
                f"has lapsed:\n   HTTP {refused.status_code} {problem.get('code')}: "
                f"{problem.get('detail')}"
            )
            ok = ok and refused.status_code == 403 and problem.get("code") == "sharing_refused"

            # an IG officer answers the person's subject access request from the log
            ig = await create_client(system.runtime, PRISON, scopes=[IG_AUDIT_SCOPE])
            clients["ig"] = AgencyClient(system.gateway_url, ig["client_id"], ig["client_secret"])
            person = release_notice(today)["person"]
            r = await clients["ig"].request(
                "POST",
                "/v1/audit/subject-access",
                json={"pnc_id": person["pnc_id"], "crn": person["crn"]},
            )
            report = r.json() if r.status_code == 200 else {"disclosures": []}
            lines = report["disclosures"]
            delivered = sorted({x["recipient"] for x in lines if x["event"] == "delivered"})
            refusals = sum(x["event"] == "refused" for x in lines)
            bases = sorted(
                {b for x in lines if x["event"] == "delivered" for b in x["lawful_basis"]}
            )
            out(
                f"\n4. An IG officer answers the person's subject access request (by PNC id and "
                f"CRN): HTTP {r.status_code}, {len(lines)} log entries; disclosed to "
                f"{len(delivered)} partners, {refusals} refused share(s); lawful bases: "
                f"{'; '.join(bases)}"
            )
            ok = ok and r.status_code == 200 and delivered == sorted(ENTITLED) and refusals == 1

            if inspect is not None:
                await inspect(system)
            for c in clients.values():
                await c.aclose()
        finally:
            await system.stop()
            await receivers.stop()
    elapsed = time.monotonic() - started
    out(f"\n{'PASS' if ok else 'FAIL'}: demo finished in {elapsed:.1f}s")
    return ok


async def _from_own_topic(
    system: System,
    topic: str,
    key: dict[str, Any],
    accepted: dict[str, Any],
    credential: dict[str, Any] | None = None,
) -> Row:
    """What the IOM team reads from its own topic: a compact JWE it opens with its key,
    holding an event it checks the broker signed (with the keys the gateway publishes). With
    ``credential`` (its own Kafka principal) the cluster lets it read that topic only."""
    assert system.runtime is not None  # noqa: S101
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.get(system.gateway_url + recipient.BROKER_KEYS_PATH)
        r.raise_for_status()
    broker_keys = recipient.BrokerKeys(r.json())
    kw = system.runtime.kafka.consumer_kwargs(f"{KAFKA_PARTY}.demo")
    if credential is not None:
        kw.update(
            sasl_mechanism=credential["mechanism"],
            sasl_plain_username=credential["username"],
            sasl_plain_password=credential["password"],
        )
    # a group of its own each run: the topic may hold an earlier run's records (a cluster
    # outlives a demo), which the team skips by their message id
    kw["group_id"] = f"{KAFKA_PARTY}.demo-{accepted.get('id')}"
    consumer = AIOKafkaConsumer(topic, **kw)
    await consumer.start()
    nothing = problem = "nothing on its topic"
    try:
        async with asyncio.timeout(30):
            while True:
                record = await consumer.getone()
                headers = dict(record.headers)
                if headers.get("isa_message_id", b"").decode() != accepted.get("id"):
                    continue
                try:
                    opened = recipient.open_record(
                        record.value or b"",
                        record.headers,
                        [key],
                        broker_keys=broker_keys,
                        recipient=KAFKA_PARTY,
                    )
                except recipient.DeliveryDecryptError as e:
                    problem = str(e)
                    break
                return Row(KAFKA_PARTY, True, _leaves(opened.event["data"]), True)
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return Row(KAFKA_PARTY, problem != nothing, [], False, problem)


async def _wait_settled(system: System, message_id: str | None, timeout: float = 10) -> None:
    """Wait until the router has recorded an outcome for every recipient."""
    assert system.runtime is not None  # noqa: S101
    if message_id is None:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = await system.runtime.store.get_message(message_id)
        if message and message["status"] == "complete":
            return
        await asyncio.sleep(0.1)
