"""The command examples in the documentation are what the commands print today
(docs/examples/regenerate.py runs them), and the script itself finds, normalises, cuts and
rewrites examples as its docstring says."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "doc_examples_regenerate", ROOT / "docs" / "examples" / "regenerate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


regenerate = _load()


def test_the_documentation_examples_are_what_the_commands_print() -> None:
    examples = [e for path in regenerate.documents() for e in regenerate.find_examples(path)]
    assert {e.id for e in examples} >= {
        "isa-lint",
        "isa-explain",
        "isa-coverage",
        "clients-create-secret",
        "keys-rotate",
        "audit-restore-older-backup",
    }
    stale = [o for o in regenerate.run_all(examples) if o.stale]
    assert not stale, (
        "\n\n".join(o.report() for o in stale)
        + "\n\nregenerate them with: python docs/examples/regenerate.py --write"
    )


def _doc(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "page.md"
    path.write_text(text)
    return path


STALE_PAGE = """# A page

<!-- example: echo -->
```console
$ printf 'cs_%s 0123456789abcdef 0123456789abcdef fedcba9876543210\\n' AAAAAAAAAAAAAAAAAAAAAAAAAA
what it printed once
$ printf 'eastborough-vawg.0a1b2c3d4e5f at 2026-12-07T17:01:25.943690Z\\n'
```

<!-- example-unchecked: not a command of ours -->
```console
$ anything
```
"""


def test_a_stale_example_is_reported_then_rewritten_with_placeholders(tmp_path: Path) -> None:
    path = _doc(tmp_path, STALE_PAGE)
    [example] = regenerate.find_examples(path)
    [outcome] = regenerate.run_all([example], fresh_processes=True)
    assert outcome.stale and outcome.error is None
    assert "-what it printed once" in outcome.report()

    regenerate.write([outcome])
    [example] = regenerate.find_examples(path)
    assert example.lines[1] == "<client-secret> <kid-1> <kid-1> <kid-2>"
    assert example.lines[3] == "eastborough-vawg.<id> at <time>"
    assert "<!-- example-unchecked: not a command of ours -->" in path.read_text()
    [again] = regenerate.run_all([example], fresh_processes=True)
    assert not again.stale


def test_an_excerpt_keeps_the_paragraphs_named(tmp_path: Path) -> None:
    path = _doc(
        tmp_path,
        "<!-- example: parts excerpt=1-2,4 -->\n```console\n"
        "$ printf 'one\\n\\ntwo\\n2b\\n\\nthree\\n\\nfour\\n\\nfive\\n'\n```\n",
    )
    [example] = regenerate.find_examples(path)
    assert regenerate.render(example, regenerate.FRESH_PROCESS)[1:] == [
        "one",
        "",
        "two",
        "2b",
        "...",
        "four",
        "...",
    ]


def test_a_failing_command_is_an_error_and_nothing_is_written(tmp_path: Path) -> None:
    text = "<!-- example: broken -->\n```console\n$ exit 70\nold\n```\n"
    path = _doc(tmp_path, text)
    [outcome] = regenerate.run_all(regenerate.find_examples(path), fresh_processes=True)
    assert outcome.error is not None and "exited with 70" in outcome.error
    regenerate.write([outcome])
    assert path.read_text() == text


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("```console\n$ isa-broker isa lint\n```\n", "a console block without"),
        ("<!-- example: x -->\nsome prose\n```console\n$ true\n```\n", "just before its block"),
        ("<!-- example: x -->\n```console\nno command\n```\n", "must start with '\\$ '"),
        ("<!-- example: x setup=nothing -->\n```console\n$ true\n```\n", "no setup 'nothing'"),
    ],
)
def test_blocks_that_cannot_be_checked_are_refused(
    tmp_path: Path, text: str, complaint: str
) -> None:
    with pytest.raises(regenerate.ExampleError, match=complaint):
        regenerate.find_examples(_doc(tmp_path, text))
