"""The demonstration run with JSON-lines logs (ISA_BROKER_LOG_FORMAT=json) at INFO: every
line on stderr is one JSON object, the broker's own lines carry the ids as fields, and none
names the demo person."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.core.settings import REPO_ROOT
from services.demo.scenario import release_notice

pytestmark = pytest.mark.integration


def test_the_demo_logs_json_lines_without_the_person(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ISA_BROKER_", "KAFKA_"))}
    env.update(ISA_BROKER_LOG_FORMAT="json", ISA_BROKER_LOG_LEVEL="INFO")
    done = subprocess.run(  # noqa: S603 - our own command
        [sys.executable, "-m", "services.cli", "demo", "--scenario", "basic"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    ours = [line for line in lines if line["logger"].startswith("isa_broker")]
    accepted = [line for line in ours if line["message"].startswith("accepted ")]
    assert accepted and all(line["message_id"] and line["sender"] for line in accepted)
    delivered = [line for line in ours if line["message"].startswith("delivered ")]
    assert delivered and all(line["delivery_id"] and line["recipient"] for line in delivered)
    person = release_notice(dt.date.today())["person"]
    for value in person.values():
        if len(value) > 4:  # "male" is an ordinary word of log lines
            assert value not in done.stderr, value
    assert "Example Park" not in done.stderr and "methadone" not in done.stderr
