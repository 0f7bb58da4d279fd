"""A running system's /metrics: the series of the catalogue (docs/operations.md, Metrics)
move with the traffic, and carry ids, types and outcomes only, never the person."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.demo.agency import AgencyClient
from services.demo.receivers import Receivers
from services.system import System, ensure_demo_clients
from tests.factories import identifying, release_notice


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_follow_intake_and_delivery_and_name_no_person(
    system: System, receivers: Receivers
) -> None:
    assert system.runtime is not None
    creds = await ensure_demo_clients(system.runtime)
    clients = {
        p: AgencyClient(system.gateway_url, c["client_id"], c["client_secret"])
        for p, c in creds.items()
    }
    await clients["eastborough-vawg"].subscribe(
        ["release-notice"], receivers.url("eastborough-vawg")
    )
    notice = release_notice()
    r = await clients["hmp-northgate"].publish("release-notice", notice)
    assert r.status_code == 202, r.text
    invalid = await clients["hmp-northgate"].publish("release-notice", {"person": {}})
    assert invalid.status_code == 422
    assert await receivers.wait_for({"eastborough-vawg"}, timeout=60)
    async with httpx.AsyncClient() as http:
        scraped = await http.get(system.gateway_url + "/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    found = samples(scraped.text)

    def value(name: str, **labels: str) -> float:
        return found.get((name, tuple(sorted(labels.items()))), 0.0)

    intake = "isa_broker_intake_total"
    assert value(intake, message_type="release-notice", outcome="accepted") >= 1
    assert value(intake, message_type="release-notice", outcome="invalid") >= 1
    assert value("isa_broker_decision_seconds_count", message_type="release-notice") >= 1
    assert value("isa_broker_api_refusals_total", code="validation_failed") >= 1
    for _ in range(50):  # the delivery is counted once its outcome is recorded
        delivered = value(
            "isa_broker_deliveries_total",
            channel="webhook",
            outcome="delivered",
            recipient="eastborough-vawg",
        )
        if delivered:
            break
        async with httpx.AsyncClient() as http:
            found = samples((await http.get(system.gateway_url + "/metrics")).text)
    assert delivered >= 1
    assert value("isa_broker_store_up") == 1
    for gauge in (
        "isa_broker_outbox_unpublished",
        "isa_broker_messages_unrouted",
        "isa_broker_deliveries_retrying",
        "isa_broker_deliveries_dead_lettered",
        "isa_broker_subscriptions_disabled",
        "isa_broker_duties_overdue",
        "isa_broker_dip_breaches_nearing_stl",
        "isa_broker_audit_oldest_unsealed_seconds",
    ):
        assert (gauge, ()) in found, gauge
    for value in identifying(notice):
        assert value not in scraped.text
    for c in clients.values():
        await c.aclose()


async def test_metrics_show_the_signing_keys_ages_and_no_key(system: System) -> None:
    """The token- and delivery-signing keys' ages and rotation policy, by key set only; a
    scrape rotates nothing (the published kids stay the same) and shows no key material."""
    assert system.runtime is not None
    tokens = system.runtime.settings.tokens
    base = system.gateway_url
    async with httpx.AsyncClient() as http:
        # fetching the JWKSs is a use of each key set: it makes the first key if none is yet
        published = {
            key: (await http.get(base + path)).json()["keys"]
            for key, path in (
                ("token", "/.well-known/jwks.json"),
                ("delivery", "/.well-known/delivery-signing-keys.json"),
            )
        }
        scraped = await http.get(base + "/metrics")
        assert scraped.status_code == 200
        again = {
            key: (await http.get(base + path)).json()["keys"]
            for key, path in (
                ("token", "/.well-known/jwks.json"),
                ("delivery", "/.well-known/delivery-signing-keys.json"),
            )
        }
    assert again == published
    found = samples(scraped.text)
    for key in ("token", "delivery"):
        age = found[("isa_broker_signing_key_age_seconds", (("key", key),))]
        assert 0 <= age < 600, (key, age)
        assert found[("isa_broker_signing_key_max_age_seconds", (("key", key),))] == (
            tokens.signing_key_max_age_days * 86_400
        )
        assert found[("isa_broker_signing_key_publish_ahead_seconds", (("key", key),))] == (
            tokens.signing_key_publish_ahead_seconds
        )
    signing = [(name, labels) for name, labels in found if name.startswith("isa_broker_signing")]
    assert {labels for _, labels in signing} == {(("key", "token"),), (("key", "delivery"),)}
    for jwk in (*published["token"], *published["delivery"]):
        for field in ("kid", "x", "y"):
            assert jwk[field] not in scraped.text, field
