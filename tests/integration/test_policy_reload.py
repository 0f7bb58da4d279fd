"""Agreements reload without a restart; a bad file leaves the previous set in force."""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
from pathlib import Path

import pytest

from services.core.errors import FictionalPolicies, SharingRefused
from services.core.policy_watcher import PolicyWatcher
from services.core.runtime import Runtime
from services.core.settings import REPO_ROOT
from tests.conftest import make_settings
from tests.factories import release_notice

pytestmark = pytest.mark.integration

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
async def runtime(tmp_path: Path) -> Runtime:
    policies = tmp_path / "isa_policies"
    shutil.copytree(REPO_ROOT / "isa_policies", policies)
    rt = await Runtime.create(make_settings(tmp_path, policies_dir=policies), "", embedded=True)
    yield rt  # type: ignore[misc]
    await rt.aclose()


def _recipients(rt: Runtime) -> list[str]:
    d = rt.engine.decide("hmp-northgate", "release-notice", NOW, None, release_notice())
    return [r.party for r in d.recipients]


def _edit(rt: Runtime, name: str, old: str, new: str) -> None:
    path = rt.settings.agreements_dir / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


async def test_suspending_an_agreement_takes_effect_on_reload(runtime: Runtime) -> None:
    watcher = PolicyWatcher(runtime)
    assert "eastborough-vawg" in _recipients(runtime)
    _edit(runtime, "ISA-EB-020.yaml", "status: active", "status: suspended")
    assert await watcher.reload() is True
    assert "eastborough-vawg" not in _recipients(runtime)
    events = [e["event"] for e in await runtime.store.audit_entries()]
    assert events == ["policies_reloaded"]


async def test_a_bad_file_is_refused_and_the_previous_set_stays(runtime: Runtime) -> None:
    watcher = PolicyWatcher(runtime)
    before = runtime.engine
    _edit(
        runtime,
        "ISA-EB-020.yaml",
        "message.risk.domestic_abuse == true",
        "message.risk.domestic_abuse ==",
    )
    assert await watcher.reload() is False
    assert runtime.engine is before
    assert watcher.last_error is not None
    assert (
        "ISA-EB-020.yaml" in watcher.last_error
        and "perpetrator-release-alert" in watcher.last_error
    )
    assert "eastborough-vawg" in _recipients(runtime)
    [entry] = await runtime.store.audit_entries()
    assert entry["event"] == "policies_reload_refused"


async def test_the_watcher_notices_a_changed_file(runtime: Runtime) -> None:
    import asyncio

    runtime.settings.policies_reload_seconds = 0.05
    watcher = PolicyWatcher(runtime)
    task = asyncio.create_task(watcher.run())
    try:
        _edit(runtime, "ISA-WS-003.yaml", 'expires_on: "2022-12-31"', 'expires_on: "2099-12-31"')
        for _ in range(100):
            await asyncio.sleep(0.05)
            if "westshire-youth-justice" in _recipients(runtime):
                break
        assert "westshire-youth-justice" in _recipients(runtime)
    finally:
        # wait for the watcher to stop: the engine is swapped before the reload is written
        # to the disclosure log, and a write left unwinding when the store closes never ends
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    with pytest.raises(SharingRefused):
        runtime.engine.decide("eastborough-vawg", "release-notice", NOW, None, release_notice())


def _unmark(policies: Path) -> None:
    """The demo files made a partnership's own: the ``fictional`` marker taken out."""
    for path in [policies / "parties.yaml", *(policies / "agreements").glob("*.yaml")]:
        path.write_text(path.read_text().replace("\nfictional: true\n", "\n", 1))


async def test_production_refuses_fictional_agreements_at_start_and_on_reload(
    tmp_path: Path,
) -> None:
    policies = tmp_path / "isa_policies"
    shutil.copytree(REPO_ROOT / "isa_policies", policies)
    settings = make_settings(tmp_path, policies_dir=policies)
    # the production rules about connections are tested with the settings; here only the
    # agreements differ, so the mode is switched on a dev configuration
    settings.mode = "production"
    with pytest.raises(FictionalPolicies, match="marked fictional"):
        await Runtime.create(settings, "", embedded=True)
    _unmark(policies)
    rt = await Runtime.create(settings, "", embedded=True)
    try:
        watcher = PolicyWatcher(rt)
        before = rt.engine
        shutil.copy(
            REPO_ROOT / "isa_policies" / "agreements" / "ISA-EB-020.yaml",
            rt.settings.agreements_dir,
        )
        assert await watcher.reload() is False
        assert rt.engine is before
        assert watcher.last_error is not None and "ISA-EB-020.yaml" in watcher.last_error
        events = [e["event"] for e in await rt.store.audit_entries()]
        assert events == ["policies_reload_refused"]
    finally:
        await rt.aclose()
