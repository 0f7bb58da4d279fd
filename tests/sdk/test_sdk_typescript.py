"""The TypeScript agency SDK (``sdk/typescript``): installed from its lock file, compiled, and
its own test suite (``npm test``) run against the broker of ``sdk_env``. It must pass, with its
end-to-end test run rather than skipped: that test writes the steps it completed to the file
named by ``ISA_SDK_E2E_REPORT``."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.npm import npm_ci
from tests.sdk.conftest import REPO, tool_or_missing

SDK = REPO / "sdk" / "typescript"
#: every step of ``test/e2e.test.ts``, in order
E2E_STEPS = [
    "tokens",
    "encryption_key",
    "subscriptions",
    "publish",
    "webhook",
    "kafka_record",
    "inbox",
    "duty_ack",
    "deliveries",
    "problem",
]


def _run(command: list[str], env: dict[str, str], timeout: float) -> str:
    result = subprocess.run(  # noqa: S603 - npm, fixed arguments
        command, cwd=SDK, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = result.stdout[-12000:] + result.stderr[-4000:]
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{output}"
    return output


@pytest.mark.timeout(1500)
def test_typescript_sdk_suite_passes_against_the_broker(
    sdk_env: dict[str, str], tmp_path: Path
) -> None:
    tool_or_missing("node")
    npm = tool_or_missing("npm")
    npm_ci(SDK)

    report = tmp_path / "e2e-steps.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISA_")}
    env.update(sdk_env)
    env["ISA_SDK_E2E_REPORT"] = str(report)

    _run([npm, "run", "build"], env, timeout=300)
    output = _run([npm, "test"], env, timeout=900)

    assert report.is_file(), f"the end-to-end test did not run:\n{output}"
    steps = json.loads(report.read_text())["steps"]
    assert steps == E2E_STEPS, f"end-to-end steps done: {steps}\n{output}"
