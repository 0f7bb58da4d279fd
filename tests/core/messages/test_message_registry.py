"""The registry of message types."""

from __future__ import annotations

import pytest

from services.core.errors import NotFound, UnknownMessageType
from services.core.messages import MESSAGE_TYPES, get_message_type
from services.core.messages.fields import field_paths
from services.core.messages.models import DipBreach, LicenceRecall, ReleaseNotice


def test_registry_maps_names_to_models() -> None:
    assert {n: mt.model for n, mt in MESSAGE_TYPES.items()} == {
        "release-notice": ReleaseNotice,
        "licence-recall": LicenceRecall,
        "dip-breach": DipBreach,
    }
    for name, mt in MESSAGE_TYPES.items():
        assert mt.name == name
        assert mt.version == 1
        assert get_message_type(name) is mt


@pytest.mark.parametrize(
    ("name", "ce_type"),
    [
        ("release-notice", "org.isa-broker.release-notice.v1"),
        ("licence-recall", "org.isa-broker.licence-recall.v1"),
        ("dip-breach", "org.isa-broker.dip-breach.v1"),
    ],
)
def test_cloudevents_type_and_schema_file(name: str, ce_type: str) -> None:
    mt = get_message_type(name)
    assert mt.ce_type == ce_type
    assert mt.schema_file == f"{name}.schema.json"


def test_paths_are_precomputed_from_the_model() -> None:
    for mt in MESSAGE_TYPES.values():
        assert mt.paths == field_paths(mt.model)
        assert mt.paths, mt.name


def test_unknown_message_type_names_the_known_ones() -> None:
    with pytest.raises(UnknownMessageType) as info:
        get_message_type("release_notice")
    err = info.value
    assert isinstance(err, NotFound)
    assert err.status == 404
    assert err.code == "unknown_message_type"
    assert err.extra == {"message_type": "release_notice"}
    assert "'release_notice'" in err.detail
    assert "dip-breach, licence-recall, release-notice" in err.detail
