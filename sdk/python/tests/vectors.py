"""The shared test vectors in ``sdk/test-vectors`` (or the folder ``ISA_TEST_VECTORS``
names), which the SDKs of every language and the broker's own code are checked against."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

#: the repository's copy, two levels above this package
DEFAULT_VECTORS = Path(__file__).resolve().parents[2] / "test-vectors"


def vectors_dir() -> Path:
    return Path(os.environ.get("ISA_TEST_VECTORS") or DEFAULT_VECTORS)


def load_vectors(name: str) -> dict[str, Any]:
    """One vectors file, whole; a missing file fails the collection, never skips it."""
    path = vectors_dir() / name
    if not path.is_file():
        raise FileNotFoundError(
            f"test vectors {path} not found: set ISA_TEST_VECTORS to the sdk/test-vectors folder"
        )
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    assert document["version"] == 1, f"{path}: unknown version {document['version']}"
    return document


def cases(name: str) -> list[Any]:
    """Each case of a vectors file as a pytest parameter named by the case."""
    return [pytest.param(c, id=c["name"]) for c in load_vectors(name)["cases"]]
