"""The Java agency SDK (``sdk/java``): its Maven build and test suite, run against the broker
of ``sdk_env``, must pass with its end-to-end test run (not skipped) and every case of the
shared test vectors run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.sdk.conftest import REPO, TEST_VECTORS, tool_or_missing

SDK = REPO / "sdk" / "java"
REPORTS = SDK / "target" / "surefire-reports"
#: the SDK's end-to-end test class (``src/test/java/org/isabroker/client/EndToEndTest.java``)
E2E_CLASS = "org.isabroker.client.EndToEndTest"
VECTORS_CLASS = "org.isabroker.client.VectorsTest"
#: a cold ~/.m2 downloads the plugins and dependencies once; warm, the run takes seconds
TIMEOUT_SECONDS = 900


def _cases(report: Path) -> list[ET.Element]:
    return list(ET.parse(report).getroot().iter("testcase"))  # noqa: S314 - our own report


def test_java_sdk_suite_passes_against_the_broker(sdk_env: dict[str, str]) -> None:
    mvn = tool_or_missing("mvn")
    tool_or_missing("java")
    shutil.rmtree(REPORTS, ignore_errors=True)  # no report of an earlier run counts
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISA_")}
    env.update(sdk_env)
    result = subprocess.run(  # noqa: S603 - the tool found on PATH, fixed arguments
        [mvn, "-B", "-q", "test"],
        cwd=SDK,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
    )
    output = result.stdout[-8000:] + result.stderr[-4000:]
    assert result.returncode == 0, output

    reports = sorted(REPORTS.glob("TEST-*.xml"))
    assert reports, f"no Surefire report in {REPORTS}\n{output}"
    by_class: dict[str, list[ET.Element]] = {}
    for report in reports:
        for case in _cases(report):
            by_class.setdefault(case.get("classname", ""), []).append(case)
    failed = [
        f"{cls}.{c.get('name')}"
        for cls, cases in by_class.items()
        for c in cases
        if c.find("failure") is not None or c.find("error") is not None
    ]
    assert failed == [], f"{failed}\n{output}"

    e2e = by_class.get(E2E_CLASS, [])
    assert len(e2e) >= 5, f"the end-to-end test did not run\n{output}"
    not_run = [c.get("name") for c in e2e if c.find("skipped") is not None]
    assert not_run == [], f"end-to-end tests skipped: {not_run}\n{output}"

    # one test per case of each shared vector file, none skipped
    expected = sum(
        len(json.loads((TEST_VECTORS / name).read_text())["cases"])
        for name in ("webhooks.json", "records.json", "problems.json")
    )
    vectors = by_class.get(VECTORS_CLASS, [])
    assert len(vectors) == expected, f"{len(vectors)} vector tests for {expected} cases\n{output}"
    assert all(c.find("skipped") is None for c in vectors), output
