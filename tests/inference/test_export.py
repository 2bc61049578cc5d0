"""ONNX export matches PyTorch; onnxruntime gives the same labels; a Space folder runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="needs the onnx extra")

from imgclf import Predictor
from imgclf.cli import main  # noqa: E402
from imgclf.inference.onnx_export import OnnxNetwork, export_onnx  # noqa: E402
from imgclf.serve.space import export_space


@pytest.fixture
def model(colour_model):
    return colour_model


def test_onnx_matches_pytorch_with_any_batch_size(model, tmp_path):
    photos, path = model
    images = sorted(photos.glob("*/*.jpg"))[:6]
    result = export_onnx(path, tmp_path / "m.onnx", check_images=images)
    assert result["max_difference"] <= 1e-4 and result["checked_images"] == 6
    network = OnnxNetwork(tmp_path / "m.onnx")
    assert json.loads(network.metadata["imgclf_classes"]) == ["blue", "red"]
    assert json.loads(network.metadata["imgclf_input"])["image_size"] == 64
    for batch in (1, 5):
        output = network(np.random.default_rng(0).normal(size=(batch, 3, 64, 64)))
        assert output.shape == (batch, 2) and np.allclose(output.sum(axis=1), 1, atol=1e-5)


def test_onnx_runtime_predicts_the_same_labels(model):
    photos, path = model
    images = sorted(photos.glob("*/*.jpg"))
    export_onnx(path, path.with_suffix(".onnx"))
    torch_predictor = Predictor.load(path, runtime="torch")
    onnx_predictor = Predictor.load(path, runtime="onnx")
    assert (torch_predictor.runtime, onnx_predictor.runtime) == ("torch", "onnx")
    assert onnx_predictor.info == torch_predictor.info  # the model file's full information
    exported = Predictor.load(path.with_suffix(".onnx"))
    assert exported.classes == ["blue", "red"] and exported.runtime == "onnx"
    for image in images[:8]:
        a, b, c = (torch_predictor.predict(image), onnx_predictor.predict(image),
                   exported.predict(image))
        assert a.label == b.label == c.label
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-4)
        assert a.probabilities == pytest.approx(c.probabilities, abs=1e-4)
    batch = onnx_predictor.predict_batch(images, show_progress=False)
    assert [p.label for p in batch] == [p.label for p in
                                        torch_predictor.predict_batch(images, show_progress=False)]


def test_cli_export_onnx_and_space(model, tmp_path, capsys):
    photos, path = model
    assert main(["export", str(path), "--onnx", str(tmp_path / "cli.onnx"),
                 "--space", str(tmp_path / "space"), "--examples",
                 str(photos / "red" / "0.jpg")]) == 0
    out = capsys.readouterr().out
    assert "outputs match PyTorch" in out and (tmp_path / "cli.onnx").exists()
    assert (tmp_path / "space" / "examples" / "0.jpg").exists()


def test_space_folder_is_complete_and_its_app_builds(model, tmp_path):
    _, path = model
    folder = export_space(path, tmp_path / "space")
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md", "app.py", "imgclf", "model.imgclf", "requirements.txt"]
    readme = (folder / "README.md").read_text()
    assert readme.startswith("---\n") and "sdk: gradio" in readme and "app_file: app.py" in readme
    # no package index has to have this imgclf: the folder carries it, and pins the rest
    requirements = (folder / "requirements.txt").read_text().splitlines()
    assert not any(line.startswith("imgclf") for line in requirements)
    assert any(line.startswith("torch==") for line in requirements)
    assert any(line.startswith("gradio==") for line in requirements)
    assert (folder / "imgclf" / "serve" / "gradio_app.py").exists()
    assert not list(folder.rglob("__pycache__"))
    # published: the model file names none of the training pictures (explanations' paths)
    from imgclf.modelfile import read_info

    assert read_info(path)[0].bank_pictures and not read_info(folder / "model.imgclf")[0] \
        .bank_pictures
    # the app runs on the folder's own imgclf, not the one installed here
    code = ("import runpy, imgclf; print(type(runpy.run_path('app.py')['demo']).__name__, "
            "imgclf.__file__)")
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True,
                            text=True, timeout=300, env=environment)
    kind, source = result.stdout.split()
    assert kind == "Blocks", result.stderr[-2000:]
    assert Path(source).resolve().is_relative_to(folder.resolve())


def test_a_fresh_venv_can_install_the_space_from_its_requirements_alone(model, tmp_path):
    """The Space's requirements.txt resolves in a new virtualenv against the package index
    (pip's dry run: every requirement found, nothing installed), the bug being a requirement
    no index has (imgclf[serve]>=0.1.0)."""
    _, path = model
    folder = export_space(path, tmp_path / "space")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--dry-run",
         "--ignore-installed", "--quiet", "--report", str(tmp_path / "report.json"),
         "-r", str(folder / "requirements.txt")],
        capture_output=True, text=True, timeout=900)
    if result.returncode and ("connection" in result.stderr.lower()
                              or "network" in result.stderr.lower()):
        pytest.skip(f"no package index reachable: {result.stderr[-300:]}")
    assert result.returncode == 0, result.stderr[-3000:]
    chosen = {entry["metadata"]["name"].lower()
              for entry in json.loads((tmp_path / "report.json").read_text())["install"]}
    assert {"torch", "gradio", "timm", "onnxruntime"} <= chosen and "imgclf" not in chosen
