"""The signing-key gauges of /metrics (services.core.metrics): read from the key store at
each scrape, labelled by key set only, no key material, no rotation as a side effect."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from services.core import metrics
from services.core.crypto.keys import KeyStore
from services.core.crypto.signing_keys import RotationPolicy

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
POLICY = RotationPolicy(max_age=dt.timedelta(days=30), publish_ahead=dt.timedelta(hours=1))
NAMES = (
    "isa_broker_signing_key_age_seconds",
    "isa_broker_signing_key_max_age_seconds",
    "isa_broker_signing_key_publish_ahead_seconds",
)


class QuietStore:
    """The store seam of ``render``: no work in hand."""

    async def operational_state(self, now: dt.datetime) -> dict[str, float]:
        return {}


def _signing_samples(text: str) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels["key"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name in NAMES
    }


async def _scrape(keys: KeyStore, now: dt.datetime) -> str:
    return (await metrics.render(QuietStore(), now, keys=keys)).decode()  # type: ignore[arg-type]


async def test_each_scrape_reports_the_ages_and_policies(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path, rotation=POLICY)
    keys.signing_key(T0)
    found = _signing_samples(await _scrape(keys, T0 + dt.timedelta(days=2)))
    assert found[("isa_broker_signing_key_age_seconds", "token")] == 2 * 86_400
    for key in ("token", "delivery"):
        assert found[("isa_broker_signing_key_max_age_seconds", key)] == 30 * 86_400
        assert found[("isa_broker_signing_key_publish_ahead_seconds", key)] == 3_600
    # no delivery-signing key has been made: its age has no sample (and none is made)
    assert ("isa_broker_signing_key_age_seconds", "delivery") not in found
    assert not (tmp_path / "keys" / "delivery-signing").exists()

    keys.delivery_signing_key(T0 + dt.timedelta(days=2))
    found = _signing_samples(await _scrape(keys, T0 + dt.timedelta(days=3)))
    assert found[("isa_broker_signing_key_age_seconds", "delivery")] == 86_400
    assert found[("isa_broker_signing_key_age_seconds", "token")] == 3 * 86_400


async def test_a_scrape_neither_rotates_nor_shows_a_key(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path, rotation=POLICY)
    signing = keys.signing_key(T0)
    before = sorted(p.name for p in (tmp_path / "keys" / "token-signing").iterdir())
    overdue = T0 + dt.timedelta(days=45)
    text = await _scrape(KeyStore(tmp_path, rotation=POLICY), overdue)
    assert _signing_samples(text)[("isa_broker_signing_key_age_seconds", "token")] == (45 * 86_400)
    assert sorted(p.name for p in (tmp_path / "keys" / "token-signing").iterdir()) == before
    private = signing.as_dict(private=True)
    for value in (str(signing.kid), private["d"], private["x"], private["y"]):
        assert value not in text
    labels = {
        tuple(sorted(s.labels))
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name in NAMES
    }
    assert labels == {("key",)}


async def test_without_a_key_store_the_signing_gauges_are_left_alone(tmp_path: Path) -> None:
    """``keys`` is optional; the gauges are registered (the alert rules name them) either way."""
    registered = {family.name for family in metrics.REGISTRY.collect()}
    assert set(NAMES) <= registered
    await metrics.render(QuietStore(), T0)  # type: ignore[arg-type]
