"""The public API is exactly __all__, and importing imgclf stays light."""

from __future__ import annotations

import subprocess
import sys

import imgclf


def test_all_is_sorted_and_every_name_resolves():
    assert imgclf.__all__ == sorted(imgclf.__all__)
    for name in imgclf.__all__:
        assert getattr(imgclf, name) is not None, name


def test_no_public_name_is_shadowed_by_a_submodule():
    import importlib
    import types

    for module in ("imgclf.collection", "imgclf.training", "imgclf.evaluation"):
        importlib.import_module(module)  # importing a submodule sets it as imgclf.<name>
    for name in imgclf.__all__:
        assert not isinstance(getattr(imgclf, name), types.ModuleType), name


def test_import_does_not_load_torch():
    code = "import sys, imgclf; print('torch' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert output == "False"


def test_source_never_unpickles():
    from pathlib import Path

    source = Path(imgclf.__file__).parent
    for path in source.rglob("*.py"):
        text = path.read_text()
        for forbidden in ("import pickle", "joblib", "weights_only=False", "cloudpickle"):
            assert forbidden not in text, f"{path}: {forbidden}"
