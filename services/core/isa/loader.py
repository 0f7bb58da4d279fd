"""Load and check the register of parties and the agreement files.

Every file is validated against its JSON Schema in ``schemas/`` and then cross-checked:
flow parties must be parties to the agreement and in the register, purposes must be
declared, and each field path must exist in the message types the flow names. A bad file
is refused as a whole with an error that names the file and the clause."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ..errors import AgreementFileInvalid, PartyRegisterInvalid
from ..messages import MESSAGE_TYPES
from .model import Agreement, Flow, Party, PolicySet


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
    doc = _read_yaml(path, PartyRegisterInvalid)
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


def parse_agreement(
    doc: Any, source: str, parties: dict[str, Party], validator: jsonschema.protocols.Validator
) -> Agreement:
    problems = _schema_errors(validator, doc)
    if problems:
        raise AgreementFileInvalid(f"{source}: " + "; ".join(problems))
    aid = doc["id"]
    members = frozenset(doc["parties"])
    unknown = sorted(members - parties.keys())
    if unknown:
        raise AgreementFileInvalid(f"{source}: {aid} /parties names unregistered {unknown}")
    purposes: dict[str, str] = {}
    for p in doc["purposes"]:
        if p["id"] in purposes:
            raise AgreementFileInvalid(f"{source}: {aid} /purposes: id {p['id']!r} is used twice")
        purposes[p["id"]] = p["description"]
    effective = dt.date.fromisoformat(doc["effective_from"])
    expires = dt.date.fromisoformat(doc["expires_on"])
    if expires < effective:
        raise AgreementFileInvalid(f"{source}: {aid} /expires_on is before /effective_from")
    flows: list[Flow] = []
    seen: set[str] = set()
    for i, f in enumerate(doc["flows"]):
        where = f"{source}: {aid} /flows/{i} ({f['id']})"
        if f["id"] in seen:
            raise AgreementFileInvalid(f"{where}: flow id is used twice")
        seen.add(f["id"])
        for role in ("from", "to"):
            outside = sorted(set(f[role]) - members)
            if outside:
                raise AgreementFileInvalid(
                    f"{where}: /{role} names {outside}, who are not parties to the agreement"
                )
        if f["purpose"] not in purposes:
            raise AgreementFileInvalid(
                f"{where}: purpose {f['purpose']!r} is not declared in /purposes"
            )
        for mt_name in f["message_types"]:
            mt = MESSAGE_TYPES[mt_name]
            missing = sorted(p for p in f["fields"] if p not in mt.paths)
            if missing:
                raise AgreementFileInvalid(f"{where}: {mt_name} has no field(s) {missing}")
        flows.append(
            Flow(
                id=f["id"],
                senders=frozenset(f["from"]),
                recipients=frozenset(f["to"]),
                message_types=frozenset(f["message_types"]),
                purpose=f["purpose"],
                fields=frozenset(f["fields"]),
                description=f.get("description", ""),
            )
        )
    return Agreement(
        id=aid,
        title=doc["title"],
        version=str(doc["version"]),
        status=doc["status"],
        parties=members,
        purposes=purposes,
        lawful_basis=tuple(doc["lawful_basis"]),
        effective_from=effective,
        expires_on=expires,
        review_date=dt.date.fromisoformat(doc["review_date"]) if "review_date" in doc else None,
        flows=tuple(flows),
        source=source,
    )


def load_policies(policies_dir: Path, schemas_dir: Path) -> PolicySet:
    """Load ``parties.yaml`` and every ``agreements/*.yaml`` under ``policies_dir``."""
    parties = load_parties(policies_dir / "parties.yaml", schemas_dir)
    validator = _validator(schemas_dir, "isa-agreement.schema.json")
    agreements: list[Agreement] = []
    for path in sorted((policies_dir / "agreements").glob("*.yaml")):
        doc = _read_yaml(path, AgreementFileInvalid)
        agreement = parse_agreement(doc, path.name, parties, validator)
        if any(a.id == agreement.id for a in agreements):
            raise AgreementFileInvalid(f"{path.name}: agreement id {agreement.id} is used twice")
        agreements.append(agreement)
    return PolicySet(parties=parties, agreements=tuple(agreements))
