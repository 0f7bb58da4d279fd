"""The Python agency SDK (``sdk/python``): its own test suite, run with this interpreter
against the broker of ``sdk_env``, must pass with its end-to-end tests run, not skipped."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.sdk.conftest import REPO

SDK = REPO / "sdk" / "python"
#: the end-to-end tests of the SDK's suite (``sdk/python/tests/test_e2e.py``)
E2E_MODULE = "test_e2e"


def test_python_sdk_suite_passes_against_the_broker(
    sdk_env: dict[str, str], tmp_path: Path
) -> None:
    report = tmp_path / "junit.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISA_")}
    env.update(sdk_env)
    env["PYTHONPATH"] = str(SDK / "src")  # the SDK alone: not the repository
    result = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [
            sys.executable,
            "-P",  # no current directory on sys.path: the broker's code is not importable
            "-m",
            "pytest",
            str(SDK / "tests"),
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout[-8000:] + result.stderr[-4000:]
    assert result.returncode == 0, output

    cases = ET.parse(report).getroot().iter("testcase")  # noqa: S314 - our own report
    e2e = [c for c in cases if c.get("classname", "").endswith(E2E_MODULE)]
    assert len(e2e) >= 3, output
    not_run = [c.get("name") for c in e2e if c.find("skipped") is not None]
    assert not_run == [], f"end-to-end tests skipped: {not_run}\n{output}"
