"""The layers of docs/ARCHITECTURE.md hold: import-linter's contracts in pyproject.toml pass,
and they do fail when a module imports upwards or closes a cycle, even through type hints
alone; and a module's imports of imgclf stand at its top."""

from __future__ import annotations

import ast
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
    assert "4 kept, 0 broken" in result.stdout


def copy_of_the_package(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "src", tmp_path / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    return tmp_path / "src" / "imgclf"


def test_an_upward_import_breaks_the_contracts(tmp_path):
    data = copy_of_the_package(tmp_path) / "data" / "imagedata.py"
    # the data stage reaching up to inference: the cycle data -> inference -> data
    data.write_text(data.read_text() + "\nfrom imgclf.inference.predictor import Predictor  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "imgclf.data is not allowed to import imgclf.inference" in result.stdout


def test_a_cycle_closed_by_type_hints_alone_breaks_the_contracts(tmp_path):
    callbacks = copy_of_the_package(tmp_path) / "training" / "callbacks.py"
    callbacks.write_text(callbacks.read_text() + (
        "\nfrom typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
        "    from imgclf.training.learner import Learner  # noqa\n"))
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "No cycles are allowed in imgclf.training" in result.stdout


# Imports that wait for the function that needs them, named here so that none is hidden:
# Predictor loads a model file it has run before without torch (its remembered graph), so the
# modules that build a network (and import torch) are imported when one must be built.
WITHOUT_TORCH = {"imgclf/inference/predictor.py": {"imgclf.inference.runtimes", "imgclf.model"}}


def test_imports_of_imgclf_stand_at_a_module_s_top():
    """Outside the command line (whose commands import their stage when they run, so that one
    command does not load another's libraries), the package's lazy public API and
    WITHOUT_TORCH, no function imports imgclf: an import hidden in a function hides a
    dependency from the contracts' readers and from the reader of the module."""
    hidden = []
    for path in sorted((REPO / "src" / "imgclf").rglob("*.py")):
        relative = path.relative_to(REPO / "src").as_posix()
        if relative.startswith("imgclf/cli/") or relative == "imgclf/__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    module = (inner.module if isinstance(inner, ast.ImportFrom)
                              else inner.names[0].name if isinstance(inner, ast.Import) else "")
                    if (module and module.split(".")[0] == "imgclf"
                            and module not in WITHOUT_TORCH.get(relative, ())):
                        hidden.append(f"{relative}:{inner.lineno} {module}")
    assert not hidden, hidden


# docs/ARCHITECTURE.md: no module over 600 lines, so that each reads whole
MODULE_LINES = 600


def test_every_module_stays_under_its_size():
    long = {path.relative_to(REPO / "src").as_posix(): lines
            for path in sorted((REPO / "src" / "imgclf").rglob("*.py"))
            if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MODULE_LINES}
    assert not long, f"split these modules (over {MODULE_LINES} lines): {long}"
