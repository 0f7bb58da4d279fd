"""The harness the agency SDKs' tests share: a whole embedded broker (``isa-broker dev``)
started as a process of its own, described to the SDKs' test suites by environment
variables, and the test vectors in ``sdk/test-vectors``.

``sdk_env`` maps these names to values (one broker per test module):

==============================  ==========================================================
ISA_GATEWAY_URL                 the gateway, ``http://127.0.0.1:PORT``
ISA_KAFKA_BOOTSTRAP_SERVERS     the embedded Kafka broker, ``HOST:PORT``
ISA_SENDER_PARTY                ``hmp-northgate``, which publishes release notices
ISA_SENDER_CLIENT_ID            its demo client (client_secret_basic)
ISA_SENDER_CLIENT_SECRET
ISA_RECIPIENT_PARTY             ``eastborough-vawg``, which receives them (ISA-EB-020)
ISA_RECIPIENT_CLIENT_ID         its demo client
ISA_RECIPIENT_CLIENT_SECRET
ISA_AGENCY_TOPIC                the recipient's own topic for ``kafka`` subscriptions
ISA_RELEASE_NOTICE_FILE         a JSON file: a valid synthetic release notice body
ISA_TEST_VECTORS                the directory of the shared test vectors
==============================  ==========================================================
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.core.kafka.config import KafkaProfile
from services.core.kafka.embedded import free_port
from services.core.settings.groups import KafkaSettings
from tests.conftest import missing
from tests.factories import release_notice

REPO = Path(__file__).resolve().parents[2]
TEST_VECTORS = REPO / "sdk" / "test-vectors"

SENDER = "hmp-northgate"
#: a VAWG service: ISA-EB-020's perpetrator-release-alert sends it release notices
RECIPIENT = "eastborough-vawg"

STARTUP_SECONDS = 90.0


def agency_topic(bootstrap: str) -> str:
    """The recipient's agency topic under the dev defaults' topic prefix, as the broker
    names it (``KafkaProfile.agency_topic``)."""
    prefix = KafkaSettings().topic_prefix
    return KafkaProfile(bootstrap, embedded=True, topic_prefix=prefix).agency_topic(RECIPIENT)


def tool_or_missing(name: str) -> str:
    """The path of an external tool (``node``, ``npm``, ``mvn``, ``java``...); when it is not
    installed the test is skipped loudly, or fails when CI is set (``tests.conftest.missing``)."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed (needed by the SDK tests)")
        raise AssertionError("unreachable")  # pragma: no cover - missing() always raises
    return path


def _process_env() -> dict[str, str]:
    """This environment without the product's variables (settings come from the command
    line) and without an external Kafka cluster: ``dev`` starts its embedded broker."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ISA_BROKER_", "OTEL_")) and k != "KAFKA_BOOTSTRAP_SERVERS"
    }
    env["ISA_BROKER_MODE"] = "dev"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _output(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _wait_for_start(proc: subprocess.Popen[bytes], base: str, stdout: Path, stderr: Path) -> str:
    """Wait for the gateway's ``/livez`` and for the lines ``dev`` prints once the demo
    clients are written; return the bootstrap servers it printed."""
    deadline = time.monotonic() + STARTUP_SECONDS
    bootstrap: str | None = None
    live = False
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"isa-broker dev exited with {proc.returncode}:\n"
                f"{_output(stdout)}\n{_output(stderr)[-4000:]}"
            )
        printed = _output(stdout)
        if bootstrap is None and re.search(r"^demo clients", printed, re.MULTILINE):
            found = re.search(r"^kafka bootstrap\s+(\S+)", printed, re.MULTILINE)
            bootstrap = found.group(1) if found else None
        if not live:
            with contextlib.suppress(httpx.TransportError):
                live = httpx.get(base + "/livez", timeout=2).status_code == 200
        if live and bootstrap is not None:
            return bootstrap
        time.sleep(0.1)
    raise RuntimeError(
        f"isa-broker dev did not start within {STARTUP_SECONDS:.0f}s:\n"
        f"{_output(stdout)}\n{_output(stderr)[-4000:]}"
    )


@pytest.fixture(scope="module")
def sdk_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A whole embedded broker started by ``python -m services.cli dev`` in a process of its
    own, and what an SDK's tests need to talk to it (see the module docstring)."""
    root = tmp_path_factory.mktemp("sdk-broker")
    data_dir = root / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    stdout, stderr = root / "stdout.log", root / "stderr.log"
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        proc = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            [
                sys.executable,
                "-m",
                "services.cli",
                "dev",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
            ],
            env=_process_env(),
            cwd=REPO,
            stdout=out,
            stderr=err,
        )
    try:
        bootstrap = _wait_for_start(proc, base, stdout, stderr)
        clients = json.loads((data_dir / "demo-clients.json").read_text())
        notice = root / "release-notice.json"
        notice.write_text(json.dumps(release_notice(), indent=2))
        yield {
            "ISA_GATEWAY_URL": base,
            "ISA_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "ISA_SENDER_PARTY": SENDER,
            "ISA_SENDER_CLIENT_ID": clients[SENDER]["client_id"],
            "ISA_SENDER_CLIENT_SECRET": clients[SENDER]["client_secret"],
            "ISA_RECIPIENT_PARTY": RECIPIENT,
            "ISA_RECIPIENT_CLIENT_ID": clients[RECIPIENT]["client_id"],
            "ISA_RECIPIENT_CLIENT_SECRET": clients[RECIPIENT]["client_secret"],
            "ISA_AGENCY_TOPIC": agency_topic(bootstrap),
            "ISA_RELEASE_NOTICE_FILE": str(notice),
            "ISA_TEST_VECTORS": str(TEST_VECTORS),
        }
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
