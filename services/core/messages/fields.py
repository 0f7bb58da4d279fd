"""Dotted field paths into a message (``release.date``) and per-recipient projection.

A path names an object property; naming an object includes everything beneath it. Arrays
are disclosed whole (``licence_conditions.exclusion_zones``)."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
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


@dataclass
class _Node:
    allowed: bool = False
    blocked: bool = False
    children: dict[str, _Node] = field(default_factory=dict)


@lru_cache(maxsize=4096)
def _plan(allowed: frozenset[str], blocked: frozenset[str]) -> _Node:
    """The allowed and blocked paths as a trie, built once per distinct pair of sets."""
    root = _Node()
    for paths, attr in ((allowed, "allowed"), (blocked, "blocked")):
        for path in paths:
            node = root
            for part in path.split("."):
                node = node.children.setdefault(part, _Node())
            setattr(node, attr, True)
    return root


def project(
    payload: Mapping[str, Any], allowed: Iterable[str], blocked: Iterable[str] = ()
) -> dict[str, Any]:
    """The part of ``payload`` that the ``allowed`` paths cover, less everything under a
    ``blocked`` path (blocks always win), and nothing else."""
    return projector(frozenset(allowed), frozenset(blocked))(payload)


def project_by_walking(
    payload: Mapping[str, Any], allowed: Iterable[str], blocked: Iterable[str] = ()
) -> dict[str, Any]:
    """The reference implementation of :func:`project`: a walk of the payload along the
    plan. The compiled projectors are tested against it."""
    plan = _plan(frozenset(allowed), frozenset(blocked))

    def walk(node: Mapping[str, Any], at: _Node, inherited: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if inherited:  # everything here is shared, except what a child node blocks
            items: Iterable[tuple[str, Any]] = node.items()
        else:  # only what the plan names can be shared: visit those keys alone
            items = ((k, node[k]) for k in at.children if k in node)
        for key, value in items:
            child = at.children.get(key)
            if child is None:
                out[key] = value  # reached only when inherited
                continue
            if child.blocked:
                continue
            covered = inherited or child.allowed
            if child.children and isinstance(value, Mapping):
                sub = walk(value, child, covered)
                if sub:
                    out[key] = sub
            elif covered:
                out[key] = value
        return out

    return walk(payload, plan, False)


_MISSING = object()


class Projector:
    """Projects payloads for one (allowed, blocked) pair. The first few calls walk the plan;
    from then on a specialised function does it (see :func:`_compiled`), since compiling costs
    about as much as a hundred walks and most pairs recur for every message of a flow."""

    COMPILE_AFTER = 3

    __slots__ = ("allowed", "blocked", "uses", "function")

    def __init__(self, allowed: frozenset[str], blocked: frozenset[str]) -> None:
        self.allowed = allowed
        self.blocked = blocked
        self.uses = 0
        self.function: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None

    def __call__(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        function = self.function
        if function is None:
            self.uses += 1
            if self.uses <= self.COMPILE_AFTER:
                return project_by_walking(payload, self.allowed, self.blocked)
            function = self.function = _compiled(self.allowed, self.blocked)
        return function(payload)


@lru_cache(maxsize=4096)
def projector(allowed: frozenset[str], blocked: frozenset[str]) -> Projector:
    """The cached :class:`Projector` for one pair of path sets."""
    return Projector(allowed, blocked)


def _compiled(
    allowed: frozenset[str], blocked: frozenset[str]
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A function specialised to one (allowed, blocked) pair: the plan unrolled into
    straight-line Python, so projecting costs a few dictionary look-ups per field.

    The generated code only ever holds key names, which the agreement loader has already
    restricted to ``[a-z_]`` (and which are written with ``repr``), never a value from a
    message."""
    plan = _plan(allowed, blocked)
    lines = ["def _project(p):", "    o0 = {}"]
    counter = iter(range(1, 1_000_000))

    def emit(node: _Node, src: str, dst: str, inherited: bool, depth: int) -> None:
        pad = "    " * depth
        if inherited:
            special = {k for k, c in node.children.items() if c.blocked or c.children}
            lines.append(f"{pad}for k, v in {src}.items():")
            lines.append(f"{pad}    if k not in {sorted(special)!r}:")
            lines.append(f"{pad}        {dst}[k] = v")
            keys = sorted(k for k in special if not node.children[k].blocked)
        else:
            keys = sorted(k for k, c in node.children.items() if not c.blocked)
        for key in keys:
            child = node.children[key]
            covered = inherited or child.allowed
            n = next(counter)
            v, o = f"v{n}", f"o{n}"
            lines.append(f"{pad}{v} = {src}.get({key!r}, _MISSING)")
            if covered and not child.children:
                lines.append(f"{pad}if {v} is not _MISSING:")
                lines.append(f"{pad}    {dst}[{key!r}] = {v}")
                continue
            lines.append(f"{pad}if type({v}) is dict or isinstance({v}, _Mapping):")
            if child.children:
                lines.append(f"{pad}    {o} = {{}}")
                emit(child, v, o, covered, depth + 1)
                lines.append(f"{pad}    if {o}:")
                lines.append(f"{pad}        {dst}[{key!r}] = {o}")
            if covered:
                lines.append(f"{pad}elif {v} is not _MISSING:")
                lines.append(f"{pad}    {dst}[{key!r}] = {v}")

    emit(plan, "p", "o0", False, 1)
    lines.append("    return o0")
    namespace: dict[str, Any] = {"_MISSING": _MISSING, "_Mapping": Mapping}
    exec(compile("\n".join(lines), "<projector>", "exec"), namespace)  # noqa: S102
    function: Callable[[Mapping[str, Any]], dict[str, Any]] = namespace["_project"]
    return function


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
