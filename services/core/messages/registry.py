"""The registry of message types: name, model, CloudEvents type and validation."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from ..errors import UnknownMessageType, ValidationFailed
from .fields import field_paths
from .models import DipBreach, LicenceRecall, ReleaseNotice

CE_TYPE_PREFIX = "org.isa-broker."


@dataclass(frozen=True)
class MessageType:
    name: str
    model: type[BaseModel]
    version: int = 1
    paths: dict[str, bool] = field(default_factory=dict)

    @property
    def leaves(self) -> tuple[str, ...]:
        """Every path that names a value rather than an object."""
        return tuple(p for p, leaf in self.paths.items() if leaf)

    @property
    def ce_type(self) -> str:
        return f"{CE_TYPE_PREFIX}{self.name}.v{self.version}"

    @property
    def schema_file(self) -> str:
        return f"{self.name}.schema.json"

    def json_schema(self) -> dict[str, Any]:
        schema = self.model.model_json_schema(mode="validation")
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://isa-broker.example/schemas/{self.schema_file}",
            **schema,
        }

    def validate_json(self, body: bytes) -> dict[str, Any]:
        """Validate a raw JSON body; return it as a plain dict in canonical JSON form.

        Raises :class:`ValidationFailed` listing each failing field by JSON pointer."""
        try:
            model = self.model.model_validate_json(body)
        except PydanticValidationError as e:
            errors = [
                _pointer_error(err) for err in e.errors(include_url=False, include_input=False)
            ]
            names = ", ".join(err["pointer"] or "/" for err in errors[:5])
            raise ValidationFailed(
                f"{len(errors)} field(s) of the {self.name} body failed validation: {names}",
                errors,
            ) from e
        dumped: dict[str, Any] = json.loads(model.model_dump_json(exclude_none=True))
        return dumped


def _pointer_error(err: Any) -> dict[str, str]:
    loc = [str(p).replace("~", "~0").replace("/", "~1") for p in err["loc"]]
    # Model-level validators report no location beyond the object itself.
    return {
        "pointer": "/" + "/".join(loc) if loc else "",
        "code": str(err["type"]),
        "message": str(err["msg"]),
    }


def _make(name: str, model: type[BaseModel]) -> MessageType:
    return MessageType(name=name, model=model, paths=field_paths(model))


MESSAGE_TYPES: dict[str, MessageType] = {
    mt.name: mt
    for mt in (
        _make("release-notice", ReleaseNotice),
        _make("licence-recall", LicenceRecall),
        _make("dip-breach", DipBreach),
    )
}


def get_message_type(name: str) -> MessageType:
    try:
        return MESSAGE_TYPES[name]
    except KeyError:
        known = ", ".join(sorted(MESSAGE_TYPES))
        raise UnknownMessageType(
            f"unknown message type {name!r}; known types: {known}", message_type=name
        ) from None
