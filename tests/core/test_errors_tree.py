"""The exception tree drawn in ``services/core/errors.py``'s docstring is the code's: every
class, under its parent, with its status, code and ``ValueError`` marker."""

from __future__ import annotations

import inspect
import re

from services.core import errors

LINE = re.compile(
    r"^(?P<indent>[ │├└─]*)(?P<name>[A-Z]\w+)(?P<v> \[V\])?\s+(?P<status>\d{3})\s+(?P<code>\w+)"
)


def drawn() -> dict[str, tuple[str | None, bool, int, str]]:
    """name -> (parent, marked ValueError, status, code), read from the drawing."""
    out: dict[str, tuple[str | None, bool, int, str]] = {}
    stack: list[tuple[int, str]] = []
    for text in (errors.__doc__ or "").splitlines():
        m = LINE.match(text.removeprefix("    "))
        if m is None:
            continue
        depth = len(m["indent"])
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parent = stack[-1][1] if stack else None
        out[m["name"]] = (parent, bool(m["v"]), int(m["status"]), m["code"])
        stack.append((depth, m["name"]))
    return out


def test_the_drawing_is_the_code() -> None:
    classes = {
        name: cls
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.IsaBrokerError) and cls.__module__ == errors.__name__
    }
    tree = drawn()
    assert set(tree) == set(classes)
    for name, (parent, is_value_error, status, code) in tree.items():
        cls = classes[name]
        base = next((b for b in cls.__bases__ if issubclass(b, errors.IsaBrokerError)), None)
        assert (base.__name__ if base is not None else None) == parent, name
        assert issubclass(cls, ValueError) == (
            is_value_error or any(tree[p][1] for p in _ancestors(tree, name))
        ), name
        assert (cls.status, cls.code) == (status, code), name


def _ancestors(tree: dict[str, tuple[str | None, bool, int, str]], name: str) -> list[str]:
    out = []
    parent = tree[name][0]
    while parent is not None:
        out.append(parent)
        parent = tree[parent][0]
    return out
