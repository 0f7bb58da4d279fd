"""The durable store: one async data layer over SQLite (embedded default) and PostgreSQL."""

from .store import Store
from .tables import metadata

__all__ = ["Store", "metadata"]
