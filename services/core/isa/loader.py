"""Load and check the register of parties and the agreement files.

Every file is validated against its JSON Schema in ``schemas/`` and then cross-checked:
flow parties must be parties to the agreement and in the register, purposes must be
declared, and each field path must exist in the message types the flow names. A bad file
is refused as a whole with an error that names the file and the clause."""

from __future__ import annotations

import datetime as dt
import json
import types
import typing
from pathlib import Path
from typing import Any

import cel
import jsonschema
import yaml

from ..errors import AgreementFileInvalid, FictionalPolicies, PartyRegisterInvalid
from ..messages import MESSAGE_TYPES
from .model import (
    Agreement,
    AgreementParty,
    Duty,
    Flow,
    HardBlock,
    Party,
    PolicySet,
    parse_duration,
)


def _validator(schemas_dir: Path, name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((schemas_dir / name).read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _read_yaml(path: Path, error: type[Exception]) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise error(f"{path.name}: cannot be read as YAML: {e}") from e


def _schema_errors(validator: jsonschema.protocols.Validator, doc: Any) -> list[str]:
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"/{'/'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in errors]


def load_parties(path: Path, schemas_dir: Path) -> dict[str, Party]:
    return _parties(_read_yaml(path, PartyRegisterInvalid), path, schemas_dir)


def _parties(doc: Any, path: Path, schemas_dir: Path) -> dict[str, Party]:
    problems = _schema_errors(_validator(schemas_dir, "parties.schema.json"), doc)
    if problems:
        raise PartyRegisterInvalid(f"{path.name}: " + "; ".join(problems))
    parties: dict[str, Party] = {}
    for item in doc["parties"]:
        if item["id"] in parties:
            raise PartyRegisterInvalid(f"{path.name}: party {item['id']!r} is listed twice")
        parties[item["id"]] = Party(
            id=item["id"],
            name=item["name"],
            kind=item["kind"],
            area=item.get("area"),
            competent_authority=bool(item.get("competent_authority", False)),
        )
    return parties


def _expand(
    refs: list[str], scope: dict[str, Party], where: str, *, registry: bool = False
) -> frozenset[str]:
    """Party ids and ``kind:<kind>`` references -> the parties they name within ``scope``:
    the agreement's own parties for flows, the whole register for hard blocks (a hard block
    protects data whatever other agreement would share it)."""
    out: set[str] = set()
    for ref in refs:
        if ref.startswith("kind:"):
            kind = ref.removeprefix("kind:")
            matched = {p.id for p in scope.values() if p.kind == kind}
            if not matched:
                raise AgreementFileInvalid(
                    f"{where}: /never_to names {ref!r}, but no registered party is of that kind"
                    if registry
                    else f"{where}: no party of kind {kind!r} in the agreement"
                )
            out |= matched
        elif ref in scope:
            out.add(ref)
        else:
            raise AgreementFileInvalid(
                f"{where}: /never_to names unregistered {ref!r}"
                if registry
                else f"{where}: {ref!r} is not a party to the agreement"
            )
    return frozenset(out)


def _check_paths(paths: list[str], message_types: list[str], where: str) -> None:
    for mt_name in message_types:
        missing = sorted(p for p in paths if p not in MESSAGE_TYPES[mt_name].paths)
        if missing:
            raise AgreementFileInvalid(f"{where}: {mt_name} has no field(s) {missing}")


def _compile_condition(source: str, where: str) -> Any:
    try:
        return cel.compile(source)
    except (ValueError, RuntimeError) as e:
        first = str(e).splitlines()[0]
        raise AgreementFileInvalid(f"{where}: /condition is not valid CEL: {first}") from e


def _leaf_type(model: Any, path: str) -> Any:
    """The annotation of a dotted path in a message model (``Optional`` unwrapped)."""
    annotation: Any = model
    for name in path.split("."):
        info = getattr(annotation, "model_fields", {}).get(name)
        if info is None:
            return None
        annotation = info.annotation
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0] if len(args) == 1 else annotation
    return annotation


def _parse_duty(
    spec: dict[str, Any], message_types: list[str], members: dict[str, Party], where: str
) -> Duty:
    where = f"{where} /acknowledge"
    within = before = None
    try:
        if "within" in spec:
            within = parse_duration(spec["within"])
        offset = parse_duration(spec["before"].get("offset", "PT0S")) if "before" in spec else None
    except ValueError as e:
        raise AgreementFileInvalid(f"{where}: {e}") from e
    if within is None and "before" not in spec:
        raise AgreementFileInvalid(f"{where}: names neither 'within' nor 'before'")
    if "before" in spec:
        before = spec["before"]["field"]
        for mt_name in message_types:
            if before not in MESSAGE_TYPES[mt_name].paths:
                raise AgreementFileInvalid(f"{where}/before: {mt_name} has no field {before!r}")
            kind = _leaf_type(MESSAGE_TYPES[mt_name].model, before)
            if kind not in (dt.date, dt.datetime):
                raise AgreementFileInvalid(
                    f"{where}/before: {mt_name} field {before!r} is not a date"
                )
    escalate_to = _expand(spec["escalate_to"], members, where + "/escalate_to")
    return Duty(
        within=within,
        within_text=spec.get("within"),
        before_field=before,
        before_offset=offset or dt.timedelta(0),
        before_offset_text=spec["before"].get("offset") if "before" in spec else None,
        escalate_to=escalate_to,
        actions=tuple(spec.get("actions", [])),
    )


def parse_agreement(
    doc: Any, source: str, parties: dict[str, Party], validator: jsonschema.protocols.Validator
) -> Agreement:
    problems = _schema_errors(validator, doc)
    if problems:
        raise AgreementFileInvalid(f"{source}: " + "; ".join(problems))
    aid = doc["id"]
    roles: list[AgreementParty] = []
    for entry in doc["parties"]:
        if entry["id"] not in parties:
            raise AgreementFileInvalid(
                f"{source}: {aid} /parties names {entry['id']!r}, who is not in the register"
            )
        if any(r.id == entry["id"] for r in roles):
            raise AgreementFileInvalid(f"{source}: {aid} /parties lists {entry['id']!r} twice")
        roles.append(
            AgreementParty(
                id=entry["id"],
                role=entry["role"],
                competent_authority=bool(
                    entry.get("competent_authority", parties[entry["id"]].competent_authority)
                ),
            )
        )
    members = {r.id: parties[r.id] for r in roles}
    purposes: dict[str, str] = {}
    for p in doc["purposes"]:
        if p["id"] in purposes:
            raise AgreementFileInvalid(f"{source}: {aid} /purposes: id {p['id']!r} is used twice")
        purposes[p["id"]] = p["description"]
    effective = dt.date.fromisoformat(doc["effective_from"])
    expires = dt.date.fromisoformat(doc["expires_on"])
    if expires < effective:
        raise AgreementFileInvalid(f"{source}: {aid} /expires_on is before /effective_from")
    for key in ("signatories", "retention", "breach_contacts"):
        for i, item in enumerate(doc.get(key, [])):
            if item["party"] not in members:
                raise AgreementFileInvalid(
                    f"{source}: {aid} /{key}/{i} names {item['party']!r}, "
                    "who is not a party to the agreement"
                )
    data_items: dict[str, dict[str, str]] = doc["data_items"]
    for mt_name, items in data_items.items():
        _check_paths(list(items), [mt_name], f"{source}: {aid} /data_items")
    blocks: list[HardBlock] = []
    for i, b in enumerate(doc.get("hard_blocks", [])):
        where = f"{source}: {aid} /hard_blocks/{i} ({b['id']})"
        mts = b.get("message_types") or [
            m for m in MESSAGE_TYPES if all(p in MESSAGE_TYPES[m].paths for p in b["fields"])
        ]
        if not mts:
            raise AgreementFileInvalid(f"{where}: no message type has all of {b['fields']}")
        _check_paths(b["fields"], mts, where)
        blocks.append(
            HardBlock(
                id=b["id"],
                fields=frozenset(b["fields"]),
                parties=_expand(b["never_to"], parties, where, registry=True),
                reason=b["reason"],
                message_types=frozenset(b.get("message_types", [])),
            )
        )
    flows: list[Flow] = []
    seen: set[str] = set()
    for i, f in enumerate(doc["flows"]):
        where = f"{source}: {aid} /flows/{i} ({f['id']})"
        if f["id"] in seen:
            raise AgreementFileInvalid(f"{where}: flow id is used twice")
        seen.add(f["id"])
        if f["purpose"] not in purposes:
            raise AgreementFileInvalid(
                f"{where}: purpose {f['purpose']!r} is not declared in /purposes"
            )
        _check_paths(f["fields"], f["message_types"], where)
        _check_paths(f.get("prohibited_fields", []), f["message_types"], where)
        condition = f.get("condition")
        flows.append(
            Flow(
                id=f["id"],
                senders=_expand(f["from"], members, where + " /from"),
                recipients=_expand(f["to"], members, where + " /to"),
                message_types=frozenset(f["message_types"]),
                purpose=f["purpose"],
                fields=frozenset(f["fields"]),
                prohibited=frozenset(f.get("prohibited_fields", [])),
                condition=condition,
                legal_regime=dict(f["legal_regime"]),
                description=f.get("description", ""),
                program=_compile_condition(condition, where) if condition else None,
                duty=(
                    _parse_duty(f["acknowledge"], f["message_types"], members, where)
                    if "acknowledge" in f
                    else None
                ),
            )
        )
    return Agreement(
        id=aid,
        title=doc["title"],
        type=doc["type"],
        version=str(doc["version"]),
        supersedes=doc.get("supersedes"),
        status=doc["status"],
        parties=frozenset(members),
        party_roles=tuple(roles),
        signatories=tuple(doc.get("signatories", [])),
        purposes=purposes,
        legal_gateways=tuple(doc["legal_gateways"]),
        data_subjects=tuple(doc["data_subjects"]),
        data_items=data_items,
        retention={r["party"]: r["period"] for r in doc.get("retention", [])},
        effective_from=effective,
        expires_on=expires,
        review_date=dt.date.fromisoformat(doc["review_date"]),
        dpia_reference=doc.get("dpia_reference"),
        breach_contacts=tuple(doc.get("breach_contacts", [])),
        hard_blocks=tuple(blocks),
        flows=tuple(flows),
        source=source,
    )


def load_policies(
    policies_dir: Path, schemas_dir: Path, *, refuse_fictional: bool = False
) -> PolicySet:
    """Load ``parties.yaml`` and every ``agreements/*.yaml`` under ``policies_dir``.

    ``refuse_fictional`` (production): a folder in which any file says ``fictional: true``,
    as the demo partnership shipped with the code does, is refused as a whole, so that real
    people's data is never shared under invented agreements."""
    parties_file = policies_dir / "parties.yaml"
    register = _read_yaml(parties_file, PartyRegisterInvalid)
    parties = _parties(register, parties_file, schemas_dir)
    fictional = ["parties.yaml"] if register.get("fictional") else []
    validator = _validator(schemas_dir, "isa-agreement.schema.json")
    agreements: list[Agreement] = []
    for path in sorted((policies_dir / "agreements").glob("*.yaml")):
        doc = _read_yaml(path, AgreementFileInvalid)
        agreement = parse_agreement(doc, path.name, parties, validator)
        if any(a.id == agreement.id for a in agreements):
            raise AgreementFileInvalid(f"{path.name}: agreement id {agreement.id} is used twice")
        agreements.append(agreement)
        if doc.get("fictional"):
            fictional.append(f"agreements/{path.name}")
    if refuse_fictional and fictional:
        raise FictionalPolicies(
            f"the agreements in {policies_dir} are marked fictional ({', '.join(fictional)} "
            "say fictional: true): refused in production. Set ISA_BROKER_POLICIES_DIR to the "
            "partnership's own signed agreements"
        )
    return PolicySet(parties=parties, agreements=tuple(agreements), fictional=tuple(fictional))
