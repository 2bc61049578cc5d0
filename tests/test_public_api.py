"""The public API is exactly __all__, and importing imgclf stays light."""

from __future__ import annotations

import subprocess
import sys

import imgclf

# The public API, written out: adding or removing a public name is a decision, made here.
EXPECTED = [
    "AugmentConfig", "Backbone", "BackboneError", "CollectConfig", "CollectError", "DataConfig",
    "DataError", "Evaluation", "Explanation", "HeadConfig", "ImageData", "ImageError", "ImgclfError",
    "InputConfig", "Item", "Learner", "ModelFileError", "ModelInfo", "MultiLabelEvaluation",
    "Prediction", "Predictor",
    "TrainConfig", "classify_imagenet", "collect", "create_backbone", "eval_transform",
    "evaluate", "find_images", "import_huggingface", "import_kaggle", "items_from_csv",
    "items_from_dataframe", "items_from_filenames", "items_from_folder", "list_backbones",
    "load", "load_image", "predict_dataset", "quantize", "split_items", "train", "train_transform",
]


def test_all_is_exactly_the_expected_names_and_every_name_resolves():
    assert imgclf.__all__ == sorted(EXPECTED)
    for name in imgclf.__all__:
        assert getattr(imgclf, name) is not None, name


def test_version_has_one_home():
    from importlib.metadata import version

    from imgclf._version import __version__

    assert imgclf.__version__ == __version__ == version("imgclf")


def test_no_public_name_is_shadowed_by_a_submodule():
    import importlib
    import types

    for module in ("imgclf.collection", "imgclf.training.learner", "imgclf.evaluation.metrics"):
        importlib.import_module(module)  # importing a submodule sets it as imgclf.<name>
    for name in imgclf.__all__:
        assert not isinstance(getattr(imgclf, name), types.ModuleType), name


def test_import_does_not_load_torch():
    code = "import sys, imgclf; print('torch' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert output == "False"


def test_the_command_line_starts_without_the_heavy_libraries():
    """`imgclf --help` and the parser load no torch, matplotlib or scikit-learn: each command
    imports its stage when it runs."""
    code = ("import sys; from imgclf.cli import _parser; _parser().format_help(); "
            "print(sorted(m for m in ('torch', 'matplotlib', 'sklearn', 'onnxruntime') "
            "if m in sys.modules))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert output == "[]"


def test_source_never_unpickles():
    from pathlib import Path

    source = Path(imgclf.__file__).parent
    for path in source.rglob("*.py"):
        text = path.read_text()
        for forbidden in ("import pickle", "joblib", "weights_only=False", "cloudpickle"):
            assert forbidden not in text, f"{path}: {forbidden}"
