"""Dotted field paths and per-recipient projection."""

from __future__ import annotations

import copy
import json
from typing import Annotated, Any, Optional

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from services.core.messages import MESSAGE_TYPES
from services.core.messages.fields import field_paths, leaf_paths, project


def _example(name: str, index: int = 0) -> dict[str, Any]:
    extra = MESSAGE_TYPES[name].model.model_config["json_schema_extra"]
    assert isinstance(extra, dict)
    return copy.deepcopy(extra["examples"][index])


def _release(index: int = 0) -> dict[str, Any]:
    # Canonical (validated) form, as stored and projected by the broker.
    mt = MESSAGE_TYPES["release-notice"]
    return mt.validate_json(json.dumps(_example("release-notice", index)).encode())


# --- field_paths ------------------------------------------------------------------------


class _Leaf(BaseModel):
    x: int
    y: str | None = None


class _Mid(BaseModel):
    leaf: _Leaf
    maybe: _Leaf | None = None
    old_style: Optional[_Leaf] = None  # noqa: UP045 - the typing.Union spelling on purpose
    annotated: Annotated[_Leaf, Field(description="annotated")] | None = None
    items: list[_Leaf] = []
    mapping: dict[str, _Leaf] = {}
    n: int = 0


class _Top(BaseModel):
    mid: _Mid
    flag: bool = False


def test_field_paths_of_a_synthetic_model() -> None:
    assert field_paths(_Top) == {
        "mid": False,
        "mid.leaf": False,
        "mid.leaf.x": True,
        "mid.leaf.y": True,
        "mid.maybe": False,
        "mid.maybe.x": True,
        "mid.maybe.y": True,
        "mid.old_style": False,
        "mid.old_style.x": True,
        "mid.old_style.y": True,
        "mid.annotated": False,
        "mid.annotated.x": True,
        "mid.annotated.y": True,
        "mid.items": True,
        "mid.mapping": True,
        "mid.n": True,
        "flag": True,
    }


def test_field_paths_with_prefix() -> None:
    assert field_paths(_Leaf, "a.b.") == {"a.b.x": True, "a.b.y": True}


def test_release_notice_paths() -> None:
    paths = MESSAGE_TYPES["release-notice"].paths
    assert paths["person"] is False
    assert paths["person.prison_number"] is True
    assert paths["destination.address"] is False  # Address | None is still an object
    assert paths["destination.address.postcode"] is True
    assert paths["risk.mappa.category"] is True
    # Arrays are leaves: nothing beneath them is addressable.
    assert paths["licence_conditions.exclusion_zones"] is True
    assert not any(p.startswith("licence_conditions.exclusion_zones.") for p in paths)
    assert paths["resettlement_needs.opioid_substitution_therapy"] is False
    assert paths["victim_contact_scheme"] is True
    # Every non-root path's parent is itself a (non-leaf) path.
    for path in paths:
        if "." in path:
            assert paths[path.rsplit(".", 1)[0]] is False, path


def test_dip_breach_substances_is_a_leaf() -> None:
    paths = MESSAGE_TYPES["dip-breach"].paths
    assert paths["test.substances"] is True
    assert set(p for p in paths if "." not in p) == {"person", "test", "assessment", "breach"}


# --- project ----------------------------------------------------------------------------


def test_object_path_includes_its_whole_subtree() -> None:
    payload = _release()
    assert project(payload, {"person"}) == {"person": payload["person"]}
    assert project(payload, {"destination"}) == {"destination": payload["destination"]}
    assert "address" in project(payload, {"destination"})["destination"]


def test_leaf_paths_keep_only_that_leaf() -> None:
    payload = _release()
    out = project(payload, {"person.given_name", "release.date", "destination.address.town"})
    assert out == {
        "person": {"given_name": "Alexis"},
        "release": {"date": "2026-12-01"},
        "destination": {"address": {"town": "Eastborough"}},
    }


def test_arrays_are_disclosed_whole() -> None:
    payload = _release()
    out = project(payload, {"licence_conditions.exclusion_zones"})
    assert out == {
        "licence_conditions": {
            "exclusion_zones": [{"description": "Not to enter Example Road area", "area": "ZZ2"}]
        }
    }


def test_a_path_beneath_an_array_discloses_nothing() -> None:
    payload = _release()
    assert project(payload, {"licence_conditions.exclusion_zones.area"}) == {}


def test_absent_fields_are_omitted_not_emptied() -> None:
    payload = _release(0)  # has no opioid_substitution_therapy
    assert "opioid_substitution_therapy" not in payload["resettlement_needs"]
    assert project(payload, {"resettlement_needs.opioid_substitution_therapy"}) == {}
    assert project(payload, {"nonexistent", "person.nickname"}) == {}
    second = _release(1)  # has no licence_conditions at all
    assert project(second, {"licence_conditions", "person.crn"}) == {}


def test_name_prefixes_are_not_path_prefixes() -> None:
    payload = {"risk": {"level": 1}, "risky": 2, "person": {"given_name": "A", "given": "B"}}
    assert project(payload, {"risk"}) == {"risk": {"level": 1}}
    assert project(payload, {"person.given"}) == {"person": {"given": "B"}}
    assert project(payload, {"ris", "person.giv"}) == {}


def test_leaf_path_through_a_non_object_is_not_followed() -> None:
    payload = {"a": 5, "b": [{"c": 1}]}
    assert project(payload, {"a.x", "b.c"}) == {}


def test_project_does_not_modify_the_payload() -> None:
    payload = _release()
    before = copy.deepcopy(payload)
    project(payload, {"person.given_name", "risk"})
    assert payload == before


def test_empty_allowed_set_discloses_nothing() -> None:
    assert project(_release(), set()) == {}
    assert project(_release(), []) == {}


def test_falsy_values_are_disclosed_when_allowed() -> None:
    payload = {"a": {"flag": False, "n": 0, "s": "", "items": []}}
    assert project(payload, {"a.flag", "a.n", "a.s", "a.items"}) == payload


def test_leaf_paths_lists_present_leaves_sorted() -> None:
    payload = {"b": {"y": 1, "x": [1, 2]}, "a": 0, "c": {"d": {"e": None}}}
    assert leaf_paths(payload) == ["a", "b.x", "b.y", "c.d.e"]
    assert leaf_paths({}) == []
    assert leaf_paths({"a": {}}) == []


# --- property -------------------------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "ab", "a_b", "ba", "c"])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
)
PAYLOADS = st.recursive(
    st.dictionaries(KEYS, SCALARS, max_size=4),
    lambda children: st.dictionaries(KEYS, st.one_of(SCALARS, children), max_size=4),
    max_leaves=25,
)
PATHS = st.lists(KEYS, min_size=1, max_size=4).map(".".join)


def _get(payload: Any, path: str) -> Any:
    node = payload
    for key in path.split("."):
        node = node[key]
    return node


def _covered(path: str, allowed: set[str]) -> bool:
    parts = path.split(".")
    return any(".".join(parts[:i]) in allowed for i in range(1, len(parts) + 1))


@settings(max_examples=300, deadline=None, database=None)
@given(payload=PAYLOADS, allowed=st.sets(PATHS, max_size=6))
def test_projection_is_exactly_the_covered_leaves(
    payload: dict[str, Any], allowed: set[str]
) -> None:
    before = copy.deepcopy(payload)
    out = project(payload, allowed)
    assert payload == before

    out_leaves = leaf_paths(out)
    # Nothing beyond the allowed paths is disclosed, and what is disclosed is the payload's.
    for path in out_leaves:
        assert _covered(path, allowed), (path, allowed)
        assert _get(out, path) == _get(payload, path)
    # Everything the allowed paths cover is disclosed.
    for path in leaf_paths(payload):
        if _covered(path, allowed):
            assert path in out_leaves, (path, allowed, out)
            assert _get(out, path) == _get(payload, path)
    # Projecting again with the same paths changes nothing.
    assert project(out, allowed) == out
