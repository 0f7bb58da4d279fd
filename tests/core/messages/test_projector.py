"""The compiled projectors agree with the reference walk on every plan and payload."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.messages import MESSAGE_TYPES
from services.core.messages.fields import Projector, _compiled, project, project_by_walking

PATHS = sorted(MESSAGE_TYPES["release-notice"].paths)
KEYS = sorted({part for p in PATHS for part in p.split(".")})

values: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
)
payloads = st.recursive(
    values,
    lambda children: st.dictionaries(st.sampled_from(KEYS), children, max_size=5),
    max_leaves=25,
).filter(lambda x: isinstance(x, dict))


@settings(max_examples=400, derandomize=True, deadline=None)
@given(
    payload=payloads,
    allowed=st.frozensets(st.sampled_from(PATHS), max_size=10),
    blocked=st.frozensets(st.sampled_from(PATHS), max_size=4),
)
def test_compiled_projection_equals_the_reference_walk(
    payload: dict[str, Any], allowed: frozenset[str], blocked: frozenset[str]
) -> None:
    expected = project_by_walking(payload, allowed, blocked)
    assert _compiled(allowed, blocked)(payload) == expected
    assert project(payload, allowed, blocked) == expected


def test_a_projector_compiles_after_a_few_uses_and_agrees() -> None:
    p = {"person": {"a": 1, "b": {"c": 2}}, "release": {"date": "2026-12-01"}}
    proj = Projector(frozenset({"person", "release.date"}), frozenset({"person.b"}))
    results = [proj(p) for _ in range(Projector.COMPILE_AFTER + 2)]
    assert proj.function is not None
    assert all(r == {"person": {"a": 1}, "release": {"date": "2026-12-01"}} for r in results)


def test_projection_of_a_nested_shape() -> None:
    p = {"person": {"a": 1, "b": {"c": 2, "d": 3}}, "x": [1], "y": {"z": 1}}
    assert project(p, ["person"], ["person.b.c"]) == {"person": {"a": 1, "b": {"d": 3}}}
    assert project(p, ["person.b", "x"]) == {"person": {"b": {"c": 2, "d": 3}}, "x": [1]}
    assert project(p, ["person", "y"], ["person"]) == {"y": {"z": 1}}
    assert project(p, ["person.b.c"], ["person.b"]) == {}
