"""The layers of docs/ARCHITECTURE.md hold: import-linter's contracts in pyproject.toml pass,
and they do fail when a module imports upwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="needs import-linter (the test extra)")

REPO = Path(__file__).resolve().parents[1]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """Run lint-imports on the package under root/src with root's pyproject.toml."""
    command = Path(sys.executable).parent / "lint-imports"
    environment = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run([str(command), "--no-cache"], cwd=root, env=environment,
                          capture_output=True, text=True, timeout=120)


def test_import_contracts_are_kept():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "3 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contracts(tmp_path):
    shutil.copytree(REPO / "src", tmp_path / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    data = tmp_path / "src" / "imgclf" / "data.py"
    # data (a low layer) reaching up to predict: the cycle data -> predict -> inference -> data
    data.write_text(data.read_text() + "\nfrom imgclf.predict import Predictor  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "imgclf.data is not allowed to import imgclf.predict" in result.stdout
