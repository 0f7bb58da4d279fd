"""The shipped Prometheus alert rules (deploy/prometheus): valid, each alert firing on what it
is for and quiet on a healthy system (``promtool test rules``), and naming only series the
broker exports.

promtool comes from PATH, else from Debian's ``prometheus`` package (``apt-get download``,
unpacked once into ~/.cache/isa-broker), as the Kafka jars come from Maven Central."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from services.core import metrics
from services.core.settings import REPO_ROOT
from tests.conftest import missing

RULES = REPO_ROOT / "deploy" / "prometheus"
CACHE = Path.home() / ".cache" / "isa-broker" / "promtool"


def _from_debian(target: Path) -> str | None:
    """Fetch Debian's prometheus package and keep its promtool; the reason when it fails."""
    apt, dpkg = shutil.which("apt-get"), shutil.which("dpkg-deb")
    if apt is None or dpkg is None:
        return "promtool is not on PATH and apt-get/dpkg-deb are absent"
    with tempfile.TemporaryDirectory() as tmp:
        got = subprocess.run(  # noqa: S603 - fixed arguments
            [apt, "download", "prometheus"], cwd=tmp, capture_output=True, text=True, timeout=600
        )
        debs = list(Path(tmp).glob("prometheus_*.deb"))
        if got.returncode != 0 or not debs:
            return f"apt-get download prometheus failed: {got.stderr.strip()[-300:]}"
        subprocess.run([dpkg, "-x", str(debs[0]), f"{tmp}/x"], check=True, timeout=300)  # noqa: S603
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f"{tmp}/x/usr/bin/promtool", target)
    return None


@pytest.fixture(scope="module")
def promtool() -> Path:
    found = shutil.which("promtool")
    if found is not None:
        return Path(found)
    if not os.access(CACHE, os.X_OK):
        reason = _from_debian(CACHE)
        if reason is not None:
            missing(reason)
    return CACHE


def run(promtool: Path, *args: str) -> str:
    done = subprocess.run(  # noqa: S603 - our own files
        [str(promtool), *args], cwd=RULES, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_rules_are_valid_and_their_unit_tests_pass(promtool: Path) -> None:
    assert "SUCCESS: 11 rules found" in run(promtool, "check", "rules", "isa-broker.rules.yml")
    assert "SUCCESS" in run(promtool, "test", "rules", "isa-broker.rules.test.yml")


def test_the_rules_name_only_series_the_broker_exports() -> None:
    exported = set()
    suffixes = {"counter": ("_total",), "histogram": ("_count", "_sum", "_bucket")}
    for family in metrics.REGISTRY.collect():
        exported.add(family.name)
        # a labelled series has no sample until used: its names follow from its type
        exported.update(family.name + s for s in suffixes.get(family.type, ()))
    rules = yaml.safe_load((RULES / "isa-broker.rules.yml").read_text())
    named = {
        name
        for group in rules["groups"]
        for rule in group["rules"]
        for name in re.findall(r"isa_broker_\w+", rule["expr"])
    }
    assert named and named <= exported, sorted(named - exported)
    tested = yaml.safe_load((RULES / "isa-broker.rules.test.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    for case in tested["tests"]:
        assert {t["alertname"] for t in case["alert_rule_test"]} == alerts, case["name"]
