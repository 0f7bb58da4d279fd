"""JSON-lines log records (services.core.logs)."""

from __future__ import annotations

import json
import logging
import sys

from services.core.logs import JsonLines


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
