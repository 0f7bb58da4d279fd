"""The ``isa-broker`` command: its parser here, the commands in the modules beside it
(:mod:`.serve`, :mod:`.access`, :mod:`.store`, :mod:`.files`; settings in :mod:`.common`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import traceback
from importlib import metadata
from pathlib import Path

from ..core.errors import IsaBrokerError
from ..core.logs import TEXT_FORMAT
from ..core.messages import MESSAGE_TYPES as MESSAGE_TYPE_NAMES
from . import access, files, serve, store
from .common import settings_problems

__all__ = ["main", "settings_problems"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="isa-broker",
        description="isa-broker: information sharing between agencies under their agreements.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("dev", help="run the whole embedded system with demo parties and ISAs")
    p.add_argument(
        "--port", type=int, default=8000, help="the gateway's port on 127.0.0.1 (default 8000)"
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        help="where the store, keys and broker data live (default: ISA_BROKER_DATA_DIR)",
    )
    p.set_defaults(run=serve.dev, is_async=True)

    p = sub.add_parser("gateway", help="run the gateway and outbox relay (settings from env)")
    p.set_defaults(run=serve.serve, is_async=True)

    p = sub.add_parser("router", help="run the router, one member of its consumer group")
    p.set_defaults(run=serve.serve, is_async=True)

    p = sub.add_parser("demo", help="run the scripted scenarios on a fresh embedded system")
    p.add_argument(
        "--data-dir",
        type=Path,
        help="a folder for the demonstration's system (default: a fresh temporary one)",
    )
    p.add_argument(
        "--scenario",
        choices=("basic", "tranche", "all"),
        default="all",
        help="basic: one release notice and its projections; tranche: a batch of early "
        "releases, amendments, cancellations, DIP breaches and a recall over three simulated "
        "weeks, with the partnership board summary (default: both)",
    )
    p.add_argument(
        "--notices", type=int, default=300, help="release notices in the tranche (default 300)"
    )
    p.set_defaults(run=serve.demo, is_async=True)

    clients = sub.add_parser("clients", help="manage OAuth clients").add_subparsers(
        dest="clients_command", required=True
    )
    p = clients.add_parser("create", help="register a client for a party; prints credentials")
    p.add_argument("--party", required=True, help="the party (agency) the client acts for")
    p.add_argument(
        "--scope",
        action="append",
        help="grant this scope (repeatable); default: what the agreements let the party do",
    )
    p.add_argument("--jwks", help="file with the client's public JWK set (private_key_jwt)")
    p.add_argument(
        "--external-subject",
        help="the client's id at the external OpenID Connect provider (ISA_BROKER_OIDC_ISSUER)",
    )
    p.set_defaults(run=access.clients_create, is_async=True)
    p = clients.add_parser("list", help="registered clients (no secrets)")
    p.set_defaults(run=access.clients_list, is_async=True)
    for verb in ("disable", "enable"):
        p = clients.add_parser(verb, help=f"{verb} a client (tokens it holds stop within 10 s)")
        p.add_argument("client_id", help="the client's id (see 'clients list')")
        p.set_defaults(run=access.clients_set_disabled, is_async=True)

    keys = sub.add_parser(
        "keys",
        help="token-signing and delivery-signing keys, and the Kafka topics' key-encryption keys",
    ).add_subparsers(dest="keys_command", required=True)
    p = keys.add_parser(
        "list",
        help="token-signing keys, delivery-signing keys (with thumbprints), key-encryption keys",
    )
    p.set_defaults(run=access.keys_command, is_async=False)
    p = keys.add_parser(
        "rotate-kek", help="make a new key-encryption key current (old ones keep unwrapping)"
    )
    p.set_defaults(run=access.keys_command, is_async=False)
    p = keys.add_parser(
        "retire-kek",
        help="delete a key-encryption key that is not current: records it wrapped become "
        "unreadable, so only once they are past the topics' retention",
    )
    p.add_argument("kid", help="the key id of the retired key-encryption key")
    p.set_defaults(run=access.keys_command, is_async=False)
    p = keys.add_parser("rotate", help="publish a next key; it signs after the publish-ahead")
    p.add_argument(
        "--publish-ahead",
        type=int,
        help="seconds before the new key signs (default ISA_BROKER_SIGNING_KEY_PUBLISH_AHEAD_"
        "SECONDS; 0 after a suspected compromise)",
    )
    p.add_argument(
        "--delivery",
        action="store_true",
        help="rotate the delivery-signing keys (records and webhook bodies encrypted to "
        "agencies) instead of the token-signing keys",
    )
    p.set_defaults(run=access.keys_command, is_async=False)

    db = sub.add_parser("db", help="the store").add_subparsers(dest="db_command", required=True)
    p = db.add_parser("upgrade", help="apply pending schema migrations (also done at start-up)")
    p.set_defaults(run=store.db_upgrade, is_async=True)

    audit = sub.add_parser("audit", help="the tamper-evident disclosure log").add_subparsers(
        dest="audit_command", required=True
    )
    p = audit.add_parser("verify", help="check the whole log and its signed checkpoints")
    p.add_argument(
        "--checkpoints",
        type=Path,
        help="also check the log against checkpoints exported earlier (a partner's copy)",
    )
    p.set_defaults(run=store.audit_command, is_async=True)
    p = audit.add_parser("seal", help="seal committed entries now and sign a checkpoint")
    p.set_defaults(run=store.audit_command, is_async=True)
    p = audit.add_parser(
        "rotate-key",
        help="make a new log-signing key sign the next checkpoints (older keys keep verifying)",
    )
    p.set_defaults(run=store.audit_command, is_async=True)
    cps = audit.add_parser("checkpoints", help="signed checkpoints").add_subparsers(
        dest="checkpoints_command", required=True
    )
    p = cps.add_parser("export", help="write the checkpoints and public keys (JSON)")
    p.add_argument("--out", help="file to write (default: standard output)")
    p.set_defaults(run=store.audit_command, is_async=True, audit_command="export")
    p = audit.add_parser("subject-access", help="every disclosure about one person (logged)")
    p.add_argument("--pnc-id", help="PNC id, e.g. 26/000001D")
    p.add_argument("--crn", help="probation case reference number")
    p.add_argument("--prison-number", help="prison number")
    p.add_argument(
        "--format", choices=("json", "csv"), default="json", help="output format (default json)"
    )
    p.add_argument("--out", help="file to write (default: standard output)")
    p.set_defaults(run=store.audit_query, is_async=True)
    p = audit.add_parser("disclosures", help="disclosures by agreement, party, period (logged)")
    p.add_argument("--agreement", help="agreement id")
    p.add_argument("--version", help="agreement version (with --agreement)")
    p.add_argument("--party", help="as sender or recipient")
    p.add_argument("--since", help="from this time (ISO 8601; UTC if no offset)")
    p.add_argument("--until", help="before this time")
    p.add_argument("--limit", type=int, default=10_000, help="at most this many (10000)")
    p.add_argument(
        "--format", choices=("json", "csv"), default="json", help="output format (default json)"
    )
    p.add_argument("--out", help="file to write (default: standard output)")
    p.set_defaults(run=store.audit_query, is_async=True)

    retention = sub.add_parser(
        "retention", help="disclosures past their retention, and deletion notices"
    ).add_subparsers(dest="retention_command", required=True)
    due = retention.add_parser("due", help="delivered disclosures past retention (ids only)")
    due.add_argument(
        "--format", choices=("table", "json"), default="table", help="output format (default table)"
    )
    for p in (due, retention.add_parser("notify", help="tell recipients to delete them")):
        p.add_argument("--as-of", help="a date (00:00 UTC) or date-time; default: now")
        p.add_argument("--party", help="only deliveries to this recipient")
        p.set_defaults(run=store.retention_command, is_async=True)

    isa = sub.add_parser("isa", help="tools for information governance officers")
    isa_sub = isa.add_subparsers(dest="isa_command", required=True)
    p = isa_sub.add_parser("lint", help="check the parties register and every agreement")
    p.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")
    p.add_argument("--at", help="check as on this date (default today)")
    p.set_defaults(run=files.isa_lint, is_async=False)
    p = isa_sub.add_parser("explain", help="what a message would share with whom, and why")
    p.add_argument("message", help="a JSON file holding one message body")
    p.add_argument("--as", dest="as_party", required=True, help="the sending party")
    p.add_argument("--type", choices=sorted(MESSAGE_TYPE_NAMES), help="default: detected")
    p.add_argument("--purpose", action="append", help="purpose of the share (repeatable)")
    p.add_argument("--at", help="decide as on this date (default today)")
    p.set_defaults(run=files.isa_explain, is_async=False)
    p = isa_sub.add_parser("coverage", help="partnership matrix, gaps, expiring agreements")
    p.add_argument("--at", help="as on this date (default today)")
    p.set_defaults(run=files.isa_coverage, is_async=False)
    p = isa_sub.add_parser("export-odrl", help="write each agreement as ODRL 2.2 JSON-LD")
    p.add_argument("--out", default="odrl", help="output folder (default ./odrl)")
    p.set_defaults(run=files.isa_export_odrl, is_async=False)

    policies = sub.add_parser("policies", help="alias of 'isa lint'").add_subparsers(
        dest="policies_command", required=True
    )
    p = policies.add_parser("check", help="same as 'isa lint'")
    p.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")
    p.set_defaults(run=files.isa_lint, is_async=False)

    schemas = sub.add_parser("schemas", help="JSON Schemas").add_subparsers(
        dest="schemas_command", required=True
    )
    p = schemas.add_parser("export", help="write schemas/*.schema.json from the models")
    p.add_argument("--check", action="store_true", help="only report files out of date")
    p.set_defaults(run=files.schemas_export, is_async=False)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=TEXT_FORMAT)
    # Everything this process writes (store, keys, logs) holds personal data or secrets.
    os.umask(0o077)
    try:
        if args.is_async:
            return int(asyncio.run(args.run(args)))
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - the one place a command's failure is reported
        return report(e)


def _version() -> str:
    try:
        return metadata.version("isa-broker")
    except metadata.PackageNotFoundError:  # run from a checkout that was not installed
        return "unknown"


def report(error: Exception) -> int:
    """One line on stderr for a command that failed, and its exit status: what was wrong
    with the input (an error of the broker's own, a file that cannot be read or written),
    or, for anything unexpected, where its details were written. Never a traceback."""
    if isinstance(error, IsaBrokerError):
        print(f"isa-broker: {error.code}: {error.detail}", file=sys.stderr)
        return 2
    if isinstance(error, OSError) and error.filename is not None:
        print(f"isa-broker: {error.filename}: {error.strerror or error}", file=sys.stderr)
        return 2
    details = _write_details(error)
    where = f"; the details were written to {details}" if details else ""
    print(f"isa-broker: unexpected error ({type(error).__name__}){where}", file=sys.stderr)
    return 70


def _write_details(error: Exception) -> str | None:
    """The traceback in a file of its own, readable by this user only (it may name local
    paths and values); None if none can be written."""
    try:
        fd, path = tempfile.mkstemp(prefix="isa-broker-error-", suffix=".log")
        with os.fdopen(fd, "w") as out:
            traceback.print_exception(error, file=out)
    except OSError:
        return None
    return path
