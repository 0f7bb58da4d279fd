"""The layers the code keeps (contracts in pyproject.toml's ``[tool.importlinter]``): the
gateway and the router never import each other, the core imports neither, the ISA engine
imports nothing from the store, only the store imports SQLAlchemy, the core does not draw on
the terminal (rich), and no module or package imports its way back to itself through a
sibling. Run here so that the suite (and CI)
checks them, as ``./run check`` does."""

from __future__ import annotations

import os
import subprocess
import sys

from services.core.settings import REPO_ROOT


def test_import_contracts_are_kept() -> None:
    out = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(no_cache=True, no_logo=True))",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "6 kept, 0 broken" in out.stdout, out.stdout
