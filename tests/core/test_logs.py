"""JSON-lines log records (services.core.logs)."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from services.core.logs import JsonLines, configure


def test_a_record_is_one_json_line_with_its_ids_as_fields() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord(
            "isa_broker.router",
            logging.ERROR,
            __file__,
            1,
            "delivery_id=%s attempt failed unexpectedly; recipient=%s",
            ("msg_abc", "eastborough-vawg"),
            exc_info=sys.exc_info(),
        )
    text = JsonLines().format(record)
    assert "\n" not in text
    line = json.loads(text)
    assert line["level"] == "ERROR" and line["logger"] == "isa_broker.router"
    assert line["delivery_id"] == "msg_abc" and line["recipient"] == "eastborough-vawg"
    assert line["time"].endswith("Z")
    assert "RuntimeError: boom" in line["exception"]


@pytest.mark.parametrize(("level", "httpx_level"), [("INFO", "WARNING"), ("DEBUG", "DEBUG")])
def test_url_logging_libraries_speak_only_from_warning_unless_debugging(
    level: str, httpx_level: str
) -> None:
    loggers = [logging.getLogger(n) for n in ("", "httpx", "httpcore")]
    before = [lg.level for lg in loggers]
    try:
        configure(level, "text")
        for lg in loggers[1:]:
            assert logging.getLevelName(lg.level) == httpx_level
    finally:
        for lg, was in zip(loggers, before, strict=True):
            lg.setLevel(was)
