"""Dotted field paths into a message (``release.date``) and per-recipient projection.

A path names an object property; naming an object includes everything beneath it. Arrays
are disclosed whole (``licence_conditions.exclusion_zones``)."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    if origin is typing.Annotated:
        return _model_in(typing.get_args(annotation)[0])
    return None


def field_paths(model: type[BaseModel], prefix: str = "") -> dict[str, bool]:
    """Every path a model defines, mapped to whether it is a leaf."""
    paths: dict[str, bool] = {}
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        sub = _model_in(info.annotation)
        if sub is None:
            paths[path] = True
        else:
            paths[path] = False
            paths.update(field_paths(sub, path + "."))
    return paths


def _covered(path: str, allowed: frozenset[str]) -> bool:
    parts = path.split(".")
    return any(".".join(parts[: i + 1]) in allowed for i in range(len(parts)))


def _leads_to_allowed(path: str, allowed: frozenset[str]) -> bool:
    prefix = path + "."
    return any(a.startswith(prefix) for a in allowed)


def project(
    payload: Mapping[str, Any], allowed: Iterable[str], blocked: Iterable[str] = ()
) -> dict[str, Any]:
    """The part of ``payload`` that the ``allowed`` paths cover, less everything under a
    ``blocked`` path (blocks always win), and nothing else."""
    allowed_set = frozenset(allowed)
    blocked_set = frozenset(blocked)

    def walk(node: Mapping[str, Any], prefix: str, inherited: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in node.items():
            path = f"{prefix}{key}"
            if _covered(path, blocked_set):
                continue
            covered = inherited or path in allowed_set
            if isinstance(value, Mapping) and (
                _leads_to_allowed(path, blocked_set)
                or (not covered and _leads_to_allowed(path, allowed_set))
            ):
                sub = walk(value, path + ".", covered)
                if sub:
                    out[key] = sub
            elif covered:
                out[key] = value
        return out

    return walk(payload, "", False)


def leaf_paths(payload: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Sorted dotted paths of every leaf value present in ``payload`` (arrays are leaves)."""
    out: list[str] = []
    for key, value in payload.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(leaf_paths(value, path + "."))
        else:
            out.append(path)
    return sorted(out)
