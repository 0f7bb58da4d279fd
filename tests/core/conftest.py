"""Shared fixtures for the core unit tests: no network, no Kafka, no database."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.core.isa.loader import load_policies
from services.core.isa.model import PolicySet
from services.core.settings import Settings

SETTINGS_ENV_PREFIXES = ("ISA_BROKER_", "KAFKA_BOOTSTRAP_SERVERS")


@pytest.fixture(autouse=True)
def _no_broker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings must never pick up the developer's or CI's environment."""
    for name in list(os.environ):
        if name.startswith(SETTINGS_ENV_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ISA_BROKER_MODE", "dev")  # as tests/conftest.py: production is the default


@pytest.fixture(scope="session")
def repo_settings() -> Settings:
    """The repository's own settings (policies_dir, schemas_dir), whatever the environment
    of the session says: session fixtures run before the autouse clean-up above."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith(SETTINGS_ENV_PREFIXES):
                mp.delenv(name)
        return Settings(mode="dev")


FIXTURE_POLICIES = Path(__file__).resolve().parents[1] / "fixtures" / "isa_policies"


@pytest.fixture(scope="session")
def policies_dir() -> Path:
    """A fixed agreement set for unit tests (tests/fixtures/isa_policies), so that the demo
    partnership in isa_policies/ can change without rewriting them."""
    return FIXTURE_POLICIES


@pytest.fixture(scope="session")
def repo_policies_dir(repo_settings: Settings) -> Path:
    return repo_settings.policies_dir


@pytest.fixture(scope="session")
def schemas_dir(repo_settings: Settings) -> Path:
    return repo_settings.schemas_dir


@pytest.fixture(scope="session")
def demo_policies(policies_dir: Path, schemas_dir: Path) -> PolicySet:
    return load_policies(policies_dir, schemas_dir)
