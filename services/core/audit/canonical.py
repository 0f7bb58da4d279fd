"""The canonical bytes of a disclosure-log entry, which its leaf hash is computed over.

An entry's canonical form is the UTF-8 JSON object (RFC 8259) of exactly these members,
keys sorted at every depth, no insignificant whitespace, non-ASCII characters as themselves:

    seq           the entry's sequence number (integer)
    at            when it was written, UTC, "YYYY-MM-DDTHH:MM:SS.ffffffZ"
    event         the event name
    message_id, message_type, actor, recipient, person   string or null
    detail        the detail object as stored

The leaf hash is RFC 9162's ``SHA-256(0x00 || canonical bytes)``. Anyone holding an entry
(and the key-free rules above) can recompute it; no personal value is in it, since the log
holds field names and keyed pseudonyms only."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..clock import log_timestamp
from .merkle import leaf_hash

FIELDS = ("event", "message_id", "message_type", "actor", "recipient", "person")


def canonical_json(doc: Any) -> bytes:
    return json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def entry_bytes(entry: Mapping[str, Any], detail: Any) -> bytes:
    """Canonical bytes of an entry (a row of ``audit``) with its parsed ``detail``."""
    doc = {name: entry[name] for name in FIELDS}
    doc["seq"] = int(entry["seq"])
    doc["at"] = log_timestamp(entry["at"])
    doc["detail"] = detail
    return canonical_json(doc)


def entry_leaf(entry: Mapping[str, Any]) -> bytes:
    """The leaf hash of an entry whose ``detail`` is the stored JSON text. Raises
    ``ValueError`` when the stored text is not JSON (the stored bytes were changed)."""
    return leaf_hash(entry_bytes(entry, json.loads(entry["detail"])))
