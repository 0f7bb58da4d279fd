"""Fixtures of the security suite: the gateway tests' ``http`` and ``token_for`` (on the shared
``runtime`` fixture, a real SQLite store and the session's Kafka broker)."""

from __future__ import annotations

from tests.gateway.conftest import http, token_for

__all__ = ["http", "token_for"]
