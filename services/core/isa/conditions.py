"""Flow conditions answered in Python where CEL's answer is certain, by CEL otherwise.

Handing a value to the CEL library costs a microsecond or more per value (a message view of
ten fields, some 30 µs), while the conditions agreements use read a few fields and compare
them with literals: a tenth of a microsecond each in Python. :func:`compile_condition`
turns a condition in the subset below into a Python function; anything else gives ``None``
and the engine asks CEL.

Subset: the variables ``message``, ``sender`` and ``recipient``; field selection
(``message.risk.rosh_level``); ``has(x.f)``; literals (``true``, ``false``, decimal
integers, strings without escapes) and lists of literals after ``in``; ``!``, ``&&``,
``||``, ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``; parentheses.

The function follows CEL's semantics only where they are certain, and raises
:class:`Unsure` everywhere else, so that the engine asks CEL, which gives the answer and its
error text: a missing field, a selection or ``has`` on a value that is not an object, an
operand of ``!``, ``&&`` or ``||`` that is not a boolean, a comparison between values of two
types or involving anything but strings, booleans and 64-bit integers (CEL compares ``1``
and ``1.0`` as equal; this module does not try), a string CEL cannot hold. ``false && x``
and ``true || x`` do not look at ``x``, as in CEL. The property tests check the functions
against CEL over generated conditions and values (tests/core/isa/test_isa_conditions.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

#: message, sender, recipient: the values a condition may read
Evaluator = Callable[[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any] | None], Any]
_Node = Callable[[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any] | None], Any]

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<int>[0-9]+(?![0-9A-Za-z_.]))
    | (?P<str>"[^"\\\n\r]*"(?!")|'[^'\\\n\r]*'(?!'))
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>==|!=|<=|>=|&&|\|\||[<>!().,\[\]])
    )""",
    re.VERBOSE,
)
_VARIABLES = ("message", "sender", "recipient")
_RESERVED = frozenset(
    {
        *("as", "break", "const", "continue", "else", "false", "for", "function", "if"),
        *("import", "in", "let", "loop", "namespace", "null", "package", "return", "true"),
        *("var", "void", "while"),
    }
)
_INT64 = (-(2**63), 2**63)
_MISSING = object()


class Unsure(Exception):
    """CEL's answer is not certain here: ask CEL."""


def compile_condition(source: str) -> Evaluator | None:
    """A Python function giving the value of ``source`` (raising :class:`Unsure` where it
    is not certain), or ``None`` when ``source`` lies outside the subset."""
    tokens = _tokens(source)
    if tokens is None:
        return None
    parser = _Parser(tokens)
    try:
        node = parser.expression()
    except _Unsupported:
        return None
    if parser.at < len(tokens):
        return None
    return node


def _tokens(source: str) -> list[tuple[str, str]] | None:
    out: list[tuple[str, str]] = []
    at = 0
    end = len(source.rstrip())
    while at < end:
        m = _TOKEN.match(source, at)
        if m is None or m.end() == at:
            return None
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        at = m.end()
    return out


class _Unsupported(Exception):
    pass


class _Parser:
    """Recursive descent over CEL's grammar, restricted to the subset; the precedence is
    CEL's: ``||`` < ``&&`` < relations < ``!`` < selection."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.at = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise _Unsupported
        self.at += 1
        return token

    def expression(self) -> _Node:
        return self.disjunction()

    def disjunction(self) -> _Node:
        node = self.conjunction()
        while self.peek() == ("op", "||"):
            self.take()
            node = _or(node, self.conjunction())
        return node

    def conjunction(self) -> _Node:
        node = self.relation()
        while self.peek() == ("op", "&&"):
            self.take()
            node = _and(node, self.relation())
        return node

    def relation(self) -> _Node:
        """One relation at most: how a chain such as ``a == b == c`` associates is left to
        CEL."""
        node = self.unary()
        token = self.peek()
        if token is not None and token[0] == "op" and token[1] in _ORDER:
            self.take()
            node = _compare(token[1], node, self.unary())
        elif token == ("name", "in"):
            self.take()
            node = _member_of(node, self.literal_list())
        else:
            return node
        token = self.peek()
        if token == ("name", "in") or (
            token is not None and token[0] == "op" and token[1] in _ORDER
        ):
            raise _Unsupported
        return node

    def unary(self) -> _Node:
        if self.peek() == ("op", "!"):
            self.take()
            return _not(self.unary())
        return self.selection()

    def selection(self) -> _Node:
        token = self.take()
        kind, text = token
        if kind == "name" and text == "has" and self.peek() == ("op", "("):
            self.take()
            root, path = self.path()
            self.take(")")
            if not path:
                raise _Unsupported
            return _has(root, path)
        if kind == "name" and text in _VARIABLES:
            self.at -= 1
            root, path = self.path()
            return _select(root, path)
        if token == ("op", "("):
            node = self.expression()
            self.take(")")
            if self.peek() in (("op", "."), ("op", "["), ("op", "(")):
                raise _Unsupported
            return node
        value = self.literal_value(token)
        return lambda m, s, r: value

    def path(self) -> tuple[str, tuple[str, ...]]:
        kind, root = self.take()
        if kind != "name" or root not in _VARIABLES:
            raise _Unsupported
        path: list[str] = []
        while self.peek() == ("op", "."):
            self.take()
            kind, name = self.take()
            if kind != "name" or name in _RESERVED:
                raise _Unsupported
            path.append(name)
        if self.peek() in (("op", "("), ("op", "[")):  # a method call or an index
            raise _Unsupported
        return root, tuple(path)

    def literal_list(self) -> tuple[Any, ...]:
        self.take("[")
        values: list[Any] = []
        while self.peek() != ("op", "]"):
            values.append(self.literal_value(self.take()))
            if self.peek() == ("op", ","):
                self.take()
            elif self.peek() != ("op", "]"):
                raise _Unsupported
        self.take("]")
        return tuple(values)

    @staticmethod
    def literal_value(token: tuple[str, str]) -> Any:
        kind, text = token
        if kind == "int":
            value = int(text)
            if not _INT64[0] <= value < _INT64[1]:
                raise _Unsupported
            return value
        if kind == "str":
            return text[1:-1]
        if token == ("name", "true"):
            return True
        if token == ("name", "false"):
            return False
        raise _Unsupported


# --- the nodes ------------------------------------------------------------------------------


def _root(name: str) -> _Node:
    if name == "message":
        return lambda m, s, r: m
    if name == "sender":
        return lambda m, s, r: s
    return lambda m, s, r: r


def _select(root: str, path: tuple[str, ...]) -> _Node:
    get = _root(root)
    if len(path) == 1:
        (key,) = path

        def one(m: Any, s: Any, r: Any) -> Any:
            obj = get(m, s, r)
            if type(obj) is not dict:
                raise Unsure
            value = obj.get(key, _MISSING)
            if value is _MISSING:
                raise Unsure
            return value

        return one

    def walk(m: Any, s: Any, r: Any) -> Any:
        obj = get(m, s, r)
        for key in path:
            if type(obj) is not dict:
                raise Unsure
            obj = obj.get(key, _MISSING)
            if obj is _MISSING:
                raise Unsure
        return obj

    return walk


def _has(root: str, path: tuple[str, ...]) -> _Node:
    parent = _select(root, path[:-1]) if len(path) > 1 else _root(root)
    key = path[-1]

    def has(m: Any, s: Any, r: Any) -> bool:
        obj = parent(m, s, r)
        if type(obj) is not dict:
            raise Unsure
        return key in obj

    return has


def _boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise Unsure
    return value


def _not(operand: _Node) -> _Node:
    return lambda m, s, r: not _boolean(operand(m, s, r))


def _and(left: _Node, right: _Node) -> _Node:
    def conjunction(m: Any, s: Any, r: Any) -> bool:
        return _boolean(left(m, s, r)) and _boolean(right(m, s, r))

    return conjunction


def _or(left: _Node, right: _Node) -> _Node:
    def disjunction(m: Any, s: Any, r: Any) -> bool:
        return _boolean(left(m, s, r)) or _boolean(right(m, s, r))

    return disjunction


def _comparable(value: Any) -> type:
    """The type of a value this module compares as CEL would, else :class:`Unsure`."""
    kind = type(value)
    if kind is bool:
        return kind
    if kind is int:
        if not _INT64[0] <= value < _INT64[1]:
            raise Unsure
        return kind
    if kind is str:
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate: CEL cannot hold it
                raise Unsure from None
        return kind
    raise Unsure


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _compare(op: str, left: _Node, right: _Node) -> _Node:
    test = _ORDER[op]
    ordering = op not in ("==", "!=")

    def compare(m: Any, s: Any, r: Any) -> bool:
        a = left(m, s, r)
        b = right(m, s, r)
        kind = _comparable(a)
        if _comparable(b) is not kind or (ordering and kind is bool):
            raise Unsure
        return test(a, b)

    return compare


def _member_of(item: _Node, values: tuple[Any, ...]) -> _Node:
    kinds = {type(v) for v in values}
    if len(kinds) > 1:
        raise _Unsupported
    members = frozenset(values)
    kind = next(iter(kinds), None)

    def member_of(m: Any, s: Any, r: Any) -> bool:
        value = item(m, s, r)
        found = _comparable(value)
        if kind is None:
            return False
        if found is not kind:
            raise Unsure
        return value in members

    return member_of
