"""The rule for schema migrations (docs/operations.md, "Upgrades and schema migrations"):
expand, then contract. A migration's ``upgrade()`` only adds, so that processes of the
previous version keep working against the new schema during a rolling upgrade; dropping or
renaming, and ``NOT NULL`` on an existing column, wait for a later release. This reads each
migration's ``upgrade()`` for the operations that contract the schema. It cannot tell a
narrowed type from a widened one: review ``alter_column(type_=...)`` by eye."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from services.core.store.migrate import MIGRATIONS

VERSIONS = sorted((MIGRATIONS / "versions").glob("*.py"))
#: operations that remove or rename what a running process of the previous version uses
CONTRACTING = {"drop_table", "drop_column", "drop_constraint", "rename_table"}
CONTRACTING_SQL = ("DROP ", "RENAME ", "SET NOT NULL")


def contracting_calls(source: str) -> list[str]:
    """What in ``upgrade()`` of a migration's source contracts the schema, by line."""
    upgrade = next(
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef) and node.name == "upgrade"
    )
    found: list[tuple[int, str]] = []
    for node in ast.walk(upgrade):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        name = node.func.attr
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        if name in CONTRACTING:
            found.append((node.lineno, name))
        elif name == "alter_column":
            nullable = keywords.get("nullable")
            if isinstance(nullable, ast.Constant) and nullable.value is False:
                found.append((node.lineno, "alter_column(nullable=False)"))
            if "new_column_name" in keywords:
                found.append((node.lineno, "alter_column(new_column_name=...)"))
        elif name == "execute":
            text = " ".join(
                a.value.upper()
                for a in ast.walk(node)
                if isinstance(a, ast.Constant) and isinstance(a.value, str)
            )
            found += [
                (node.lineno, f"execute({s.strip()} ...)") for s in CONTRACTING_SQL if s in text
            ]
    return [f"line {n}: {what}" for n, what in sorted(found)]


def test_there_are_migrations() -> None:
    assert len(VERSIONS) >= 8


@pytest.mark.parametrize("path", VERSIONS, ids=lambda p: p.stem)
def test_each_migration_only_expands_the_schema(path: Path) -> None:
    assert contracting_calls(path.read_text()) == []


def test_the_check_finds_what_contracts() -> None:
    source = """
def upgrade():
    op.drop_column("messages", "payload")
    with op.batch_alter_table("clients") as batch_op:
        batch_op.alter_column("party", nullable=False)
        batch_op.alter_column("scopes", new_column_name="grants")
    op.execute("ALTER TABLE audit RENAME TO log")

def downgrade():
    op.drop_table("person_index")
"""
    assert contracting_calls(source) == [
        "line 3: drop_column",
        "line 5: alter_column(nullable=False)",
        "line 6: alter_column(new_column_name=...)",
        "line 7: execute(RENAME ...)",
    ]
