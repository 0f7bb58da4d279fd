"""Conditions answered in Python (services/core/isa/conditions.py) give CEL's answer, and
give way to CEL wherever they are not certain of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cel
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from services.core.isa import load_policies
from services.core.isa.conditions import Unsure, compile_condition

KEYS = st.sampled_from(["a", "b", "c"])
PATH = st.builds(
    lambda root, keys: root + "".join(f".{k}" for k in keys),
    st.sampled_from(["message", "sender", "recipient"]),
    st.lists(KEYS, min_size=1, max_size=3),
)
LITERAL = st.sampled_from(
    ["true", "false", "0", "1", "2", "-1", '"a"', "'b'", '""', '"é"', "1.0", "null", "2u"]
)
ATOM = st.one_of(PATH, LITERAL, PATH.map(lambda p: f"has({p})"))
RELATIONS = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(inner, RELATIONS, inner).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        st.tuples(inner, st.lists(LITERAL, max_size=3)).map(
            lambda t: f"{t[0]} in [{', '.join(t[1])}]"
        ),
        st.tuples(inner, inner).map(lambda t: f"({t[0]}) && ({t[1]})"),
        st.tuples(inner, inner).map(lambda t: f"{t[0]} && {t[1]}"),
        st.tuples(inner, inner).map(lambda t: f"{t[0]} || {t[1]}"),
        inner.map(lambda e: f"!{e}"),
        inner.map(lambda e: f"({e})"),
    )


EXPRESSIONS = st.recursive(ATOM, _extend, max_leaves=6)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=3),
    st.sampled_from([2**63 - 1, -(2**63)]),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["a", "b", "", "é", "medium"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8,
)
OBJECTS = st.dictionaries(KEYS, VALUES, max_size=3)


def cel_answer(source: str, message: Any, sender: Any, recipient: Any) -> Any:
    context = cel.Context({"message": message, "sender": sender, "recipient": recipient})
    return cel.compile(source).execute(context)


@settings(
    max_examples=2_000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(source=EXPRESSIONS, message=OBJECTS, sender=OBJECTS, recipient=OBJECTS)
def test_a_boolean_answer_in_python_is_cels(
    source: str, message: dict[str, Any], sender: dict[str, Any], recipient: dict[str, Any]
) -> None:
    try:
        cel.compile(source)
    except ValueError:
        assume(False)
    evaluate = compile_condition(source)
    if evaluate is None:
        return
    try:
        value = evaluate(message, sender, recipient)
    except Unsure:
        return
    if type(value) is bool:  # the engine takes nothing else from the Python form
        answer = cel_answer(source, message, sender, recipient)
        assert type(answer) is bool and answer == value


@pytest.mark.parametrize(
    ("source", "message", "expected"),
    [
        ("message.risk.domestic_abuse == true", {"risk": {"domestic_abuse": True}}, True),
        ("message.risk.domestic_abuse == true", {"risk": {"domestic_abuse": False}}, False),
        ("has(message.risk.mappa)", {"risk": {}}, False),
        ('message.r in ["high", "very_high"]', {"r": "high"}, True),
        ('message.r in ["high", "very_high"]', {"r": "low"}, False),
        ("message.x in []", {"x": "a"}, False),
        ("false && message.missing", {}, False),
        ("true || message.missing", {}, True),
        ("!message.f", {"f": False}, True),
        ('message.r >= "medium"', {"r": "very_high"}, True),
        ("message.n < 2", {"n": 1}, True),
        ("(message.a || message.b) && message.c", {"a": False, "b": True, "c": True}, True),
        ("!message.a == false", {"a": True}, True),  # (!a) == false, as CEL reads it
    ],
)
def test_answers_in_python(source: str, message: dict[str, Any], expected: bool) -> None:
    evaluate = compile_condition(source)
    assert evaluate is not None
    assert evaluate(message, {}, None) is expected
    assert cel_answer(source, message, {}, {}) is expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("message.risk.domestic_abuse == true", {}),  # a missing field: CEL's error text
        ("message.risk.domestic_abuse == true", {"risk": "high"}),  # not an object
        ("message.n == 1", {"n": 1.0}),  # CEL compares 1 and 1.0 as equal
        ("message.n == 1", {"n": True}),  # another type
        ("message.s == 'a'", {"s": "\ud800"}),  # a string CEL cannot hold
        ("message.n > 1", {"n": 2**63}),  # beyond CEL's integers
        ("message.f && true", {"f": "yes"}),  # not a boolean
        ("has(message.x.y)", {}),
        ("message.s in ['a']", {"s": 1}),
    ],
)
def test_gives_way_to_cel_where_unsure(source: str, message: dict[str, Any]) -> None:
    evaluate = compile_condition(source)
    assert evaluate is not None
    with pytest.raises(Unsure):
        evaluate(message, {}, None)


@pytest.mark.parametrize(
    "source",
    [
        "size(message.person.given_name) > 3",
        "message.a + 1 == 2",
        "message.a == b",  # an unknown variable
        "message.a == message.b == true",  # how a chain associates is CEL's to say
        'message.a == "\\n"',  # escapes
        'message.a == r"x"',
        "message.a == null",
        "message.a == 1.5",
        "message.a == -1",
        "message.a == 1u",
        "message.items.exists(x, x == 1)",
        'message["a"] == 1',
        'message.a in [1, "x"]',
        "message.a in message.b",
        "has(message)",
        "message.a ? true : false",
        "(message).a == 1",
    ],
)
def test_outside_the_subset_cel_answers(source: str) -> None:
    assert compile_condition(source) is None


def test_the_demo_partnership_conditions_are_answered_in_python(
    repo_policies_dir: Path, schemas_dir: Path
) -> None:
    policies = load_policies(repo_policies_dir, schemas_dir)
    conditions = {f.condition for a in policies.agreements for f in a.flows if f.condition}
    assert conditions
    assert [c for c in conditions if compile_condition(c) is None] == []
