"""Flat names: every setting keeps the one name an operator knows, ``ISA_BROKER_<NAME>``
(and ``KAFKA_BOOTSTRAP_SERVERS``), whichever group holds it in code.

A setting's flat name is its field's name at the top of ``Settings``, or its field's alias in
a group (``kafka.sasl_password`` is ``kafka_sasl_password``, see ``groups``). From that one
list, ``settings_of``:

- ``FlatEnvironment`` reads each setting from its variable. It replaces pydantic-settings'
  own environment source, which would read a group from one JSON variable
  (``ISA_BROKER_KAFKA``) or from nested names, never from the flat ones;
- ``nest`` puts flat names in their groups: the keyword arguments of ``Settings(...)``
  (``Settings(kafka_sasl_username=...)``) and what ``FlatEnvironment`` found;
- ``variable_for`` names the variable behind an error's location, for messages that name
  what the operator set: ``('kafka', 'kafka_sasl_password')`` is
  ``ISA_BROKER_KAFKA_SASL_PASSWORD``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_settings import PydanticBaseSettingsSource, SettingsError

PREFIX = "ISA_BROKER_"

#: settings also read from another variable, which wins when both are set; they take its name
#: as a keyword too (``Settings(KAFKA_BOOTSTRAP_SERVERS=...)``)
OTHER_VARIABLES: dict[str, tuple[str, ...]] = {
    "kafka_bootstrap_servers": ("KAFKA_BOOTSTRAP_SERVERS",),
}


@dataclass(frozen=True)
class Setting:
    """One setting an operator can set."""

    #: its flat name
    name: str
    #: the field of ``Settings`` holding its group; None for a setting at the top
    group: str | None
    field: FieldInfo

    @property
    def variables(self) -> tuple[str, ...]:
        """The variables it is read from, the first one set winning."""
        return (*OTHER_VARIABLES.get(self.name, ()), PREFIX + self.name.upper())


def _group_model(field: FieldInfo) -> type[BaseModel] | None:
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


@functools.cache
def settings_of(settings_cls: type[BaseModel]) -> dict[str, Setting]:
    """Every setting of ``settings_cls`` by its flat name, in the order of the fields."""
    found: dict[str, Setting] = {}
    for name, field in settings_cls.model_fields.items():
        group = _group_model(field)
        if group is None:
            found[name] = Setting(name, None, field)
            continue
        for attribute, inner in group.model_fields.items():
            flat = inner.alias or attribute
            found[flat] = Setting(flat, name, inner)
    return found


@functools.cache
def _keywords(settings_cls: type[BaseModel]) -> dict[str, Setting]:
    """The settings in groups by the lower-case names they take as keywords."""
    keywords: dict[str, Setting] = {}
    for setting in settings_of(settings_cls).values():
        if setting.group is None:
            continue
        keywords[setting.name] = setting
        if setting.name in OTHER_VARIABLES:
            keywords.update({variable.lower(): setting for variable in setting.variables})
    return keywords


def nest(settings_cls: type[BaseModel], values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with each flat name of a grouped setting moved into its group (over what
    the group was given already); names are matched without regard to case, as
    pydantic-settings matches the top-level ones. Anything else is left as it is."""
    keywords = _keywords(settings_cls)
    nested: dict[str, Any] = {}
    grouped: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        setting = keywords.get(key.lower()) if isinstance(key, str) else None
        if setting is None or setting.group is None:
            nested[key] = value
        else:
            grouped.setdefault(setting.group, {})[setting.name] = value
    for group, flat in grouped.items():
        given = nested.get(group)
        if isinstance(given, BaseModel):
            given = given.model_dump(by_alias=True, exclude_unset=True)
        nested[group] = {**given, **flat} if isinstance(given, Mapping) else flat
    return nested


def variable_for(settings_cls: type[BaseModel], loc: tuple[int | str, ...]) -> str | None:
    """The variable an error's location names (an index into a list is kept, as in
    ``ISA_BROKER_DIP_REMINDER_DAYS_1``); None for a problem of the settings as a whole."""
    parts = [str(part) for part in loc]
    field = settings_cls.model_fields.get(parts[0]) if len(parts) > 1 else None
    if field is not None and _group_model(field) is not None:
        parts = parts[1:]  # the group's name is not part of the variable's
    return PREFIX + "_".join(parts).upper() if parts else None


class FlatEnvironment(PydanticBaseSettingsSource):
    """Each setting from the first of its variables that is set, names matched without regard
    to case. A setting of a complex type (a JSON list) is decoded as JSON, and an undecodable
    value raises ``SettingsError``, as pydantic-settings' own environment source does."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every setting itself

    def __call__(self) -> dict[str, Any]:
        environ = {name.lower(): value for name, value in os.environ.items()}
        found: dict[str, Any] = {}
        for setting in settings_of(self.settings_cls).values():
            set_in = [v.lower() for v in setting.variables if v.lower() in environ]
            if not set_in:
                continue
            value: Any = environ[set_in[0]]
            if self.field_is_complex(setting.field):
                try:
                    value = self.decode_complex_value(setting.name, setting.field, value)
                except ValueError as e:
                    # the decoder's message gives the position, never the value
                    raise SettingsError(f"{set_in[0].upper()}: not valid JSON ({e})") from e
            found[setting.name] = value
        return nest(self.settings_cls, found)
