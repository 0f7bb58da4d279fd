"""Commands that only read files: the agreement tools for information governance officers
(``isa lint|explain|coverage|export-odrl``) and the schema export."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass
from .common import offline_settings


def isa_lint(args: argparse.Namespace) -> int:
    from ..core.isa.lint import lint

    settings = offline_settings()
    today = parse_date(args.at) if getattr(args, "at", None) else dt.datetime.now(dt.UTC).date()
    findings = lint(settings.policies_dir, settings.schemas_dir, today)
    for f in findings:
        print(f)
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    agreements = len(list(settings.agreements_dir.glob("*.yaml")))
    print(f"{agreements} agreement file(s): {errors} error(s), {warnings} warning(s)")
    if errors:
        return 1
    return 1 if getattr(args, "strict", False) and warnings else 0


def parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as e:
        raise SystemExit(f"isa-broker: --at must be a date such as 2026-12-01: {text!r}") from e


def isa_explain(args: argparse.Namespace) -> int:
    from ..core.errors import SharingRefused, ValidationFailed
    from ..core.isa import IsaEngine, load_policies
    from ..core.messages import MESSAGE_TYPES, get_message_type
    from ..core.messages.fields import leaf_paths

    settings = offline_settings()
    engine = IsaEngine(load_policies(settings.policies_dir, settings.schemas_dir))
    raw = Path(args.message).read_bytes()
    names = [args.type] if args.type else list(MESSAGE_TYPES)
    payload, mt_name, last_error = None, "", None
    for name in names:
        try:
            payload = get_message_type(name).validate_json(raw)
            mt_name = name
            break
        except ValidationFailed as e:
            last_error = e
    if payload is None:
        assert last_error is not None  # noqa: S101
        print(f"{args.message} is not a valid {' or '.join(names)}:")
        for err in last_error.errors:
            print(f"  {err['pointer'] or '/'}: {err['message']}")
        return 1
    at = parse_date(args.at) if args.at else dt.datetime.now(dt.UTC).date()
    when = dt.datetime.combine(at, dt.time(12), tzinfo=dt.UTC)
    print(
        f"{mt_name} from {args.as_party} on {at}"
        + (f" for {', '.join(args.purpose)}" if args.purpose else "")
        + ":"
    )
    try:
        decision = engine.decide(args.as_party, mt_name, when, args.purpose, payload)
    except SharingRefused as e:
        print(f"\nREFUSED ({e.reason}): {e.detail}")
        for rule in e.extra.get("rules", []):
            print(
                f"  - {rule['agreement']} v{rule['version']} flow {rule['flow']}: {rule['detail']}"
            )
        return 3
    all_fields = leaf_paths(payload)
    for r in decision.recipients:
        explained = r.explain(payload)
        shared = [f for f in all_fields if explained[f]["disclosed"]]
        print(f"\n{r.party} receives {len(shared)} of {len(all_fields)} fields")
        for f in shared:
            print(f"  + {f:<55} {', '.join(explained[f]['allowed_by'])}")
        blocked = [
            f
            for f in all_fields
            if not explained[f]["disclosed"] and "would_be_allowed_by" in explained[f]
        ]
        for f in blocked:
            print(f"  - {f:<55} withheld by {', '.join(explained[f]['withheld_by'])}")
        rest = len(all_fields) - len(shared) - len(blocked)
        if rest:
            print(f"    ({rest} other field(s) not shared: no flow permits them)")
    if decision.considered:
        print("\nNot applied:")
        for c in decision.considered:
            who = f" for {c.recipient}" if c.recipient else ""
            print(f"  {c.agreement_id} v{c.agreement_version} flow {c.flow_id}{who}: {c.detail}")
    for w in decision.warnings:
        print(f"\nWARNING: {w}")
    return 0


def isa_coverage(args: argparse.Namespace) -> int:
    from ..core.isa import load_policies
    from ..core.isa.coverage import coverage, load_needs

    settings = offline_settings()
    policies = load_policies(settings.policies_dir, settings.schemas_dir)
    today = parse_date(args.at) if args.at else dt.datetime.now(dt.UTC).date()
    needs = load_needs(settings.policies_dir / "needs.yaml", policies)
    cov = coverage(policies, needs, today)
    print(f"Who can send what to whom under the agreements in force on {today}:")
    for mt, cells in sorted(cov.matrix.items()):
        print(f"\n  {mt}")
        for (sender, recipient), refs in sorted(cells.items()):
            print(f"    {sender:<24} -> {recipient:<26} {'; '.join(refs)}")
    marks = {"covered": "ok ", "conditional": "ok?", "not_in_force": "GAP", "not_covered": "GAP"}
    print("\nThe partnership's needs (isa_policies/needs.yaml):")
    for n in cov.needs:
        print(
            f"  {marks[n.status]} {n.need.message_type} {n.need.sender} -> {n.need.recipient}: "
            f"{n.detail}"
        )
        if n.status in ("not_in_force", "not_covered"):
            print(f"      why it matters: {n.need.why}")
    print("\n(ok? = covered only when the flow's condition holds for the message)")
    if cov.expiring:
        print("\nExpiring within 90 days:")
        for aid, date, days in cov.expiring:
            print(f"  {aid} on {date} ({days} days)")
    if cov.reviews_due:
        print("\nReviews due or overdue within 90 days:")
        for aid, date in cov.reviews_due:
            print(f"  {aid} review {'was due' if date < today else 'due'} on {date}")
    gaps = sum(n.status in ("not_in_force", "not_covered") for n in cov.needs)
    print(f"\n{len(cov.needs) - gaps} of {len(cov.needs)} needs covered, {gaps} gap(s)")
    return 0


def isa_export_odrl(args: argparse.Namespace) -> int:
    from ..core.isa import load_policies
    from ..core.isa.odrl import export_all

    settings = offline_settings()
    policies = load_policies(settings.policies_dir, settings.schemas_dir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for aid, doc in export_all(policies).items():
        path = out / f"{aid}.odrl.jsonld"
        path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        print(f"wrote {path}")
    return 0


def schemas_export(args: argparse.Namespace) -> int:
    from ..core.messages import MESSAGE_TYPES

    settings = offline_settings()
    stale = []
    for mt in MESSAGE_TYPES.values():
        path = settings.schemas_dir / mt.schema_file
        text = json.dumps(mt.json_schema(), indent=2) + "\n"
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"out of date with the models: {', '.join(stale)}; run isa-broker schemas export")
        return 1
    return 0
