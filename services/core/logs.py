"""How a process logs: ``LEVEL logger: message`` lines by default, or JSON lines
(``ISA_BROKER_LOG_FORMAT=json``) for a log pipeline.

A JSON line carries ``time`` (RFC 3339, UTC), ``level``, ``logger`` and ``message``, and
lifts the ids a message names as ``key=value`` (``message_id``, ``delivery_id``,
``duty_id``, ``subscription_id``, ``client_id``, ``recipient``, ``sender``, ``party``,
``type``) into fields of their own, so that a pipeline can search by them; with traces on
(services.core.tracing), ``trace_id`` and ``span_id`` of the span the line was logged in.
The broker's log messages name ids, parties and error kinds only, never a person's details
(see docs/operations.md, Logs); a traceback, when there is one, is in ``exception``."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re

from opentelemetry import trace

from .clock import utc_z

#: the ``key=value`` ids lifted into fields of a JSON line
FIELDS = (
    "message_id",
    "delivery_id",
    "duty_id",
    "subscription_id",
    "client_id",
    "recipient",
    "sender",
    "party",
    "type",
)
_PAIR = re.compile(r"\b(" + "|".join(FIELDS) + r")=([^\s,;:]+)")

TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"


class JsonLines(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        line: dict[str, object] = {
            "time": utc_z(dt.datetime.fromtimestamp(record.created, dt.UTC)),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        for key, value in _PAIR.findall(message):
            line.setdefault(key, value)
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            line["trace_id"] = format(context.trace_id, "032x")
            line["span_id"] = format(context.span_id, "016x")
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


#: libraries whose INFO lines name URLs: a webhook URL may carry an agency's credential in
#: its query, so they speak only from WARNING unless DEBUG is asked for
QUIET_AT_INFO = ("httpx", "httpcore")


def configure(level: str, fmt: str) -> None:
    """Set the root logger's level, and the format of its handlers (``text`` or ``json``)."""
    root = logging.getLogger()
    root.setLevel(level)
    for name in QUIET_AT_INFO:
        logging.getLogger(name).setLevel(
            logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING
        )
    formatter = JsonLines() if fmt == "json" else logging.Formatter(TEXT_FORMAT)
    if not root.handlers:
        logging.basicConfig()
    for handler in root.handlers:
        handler.setFormatter(formatter)
