"""onnxruntime is the default CPU runtime: built once per weights and size, cached, the same
answers as PyTorch, and PyTorch where onnxruntime is missing."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="needs the onnx extra")

from imgclf import ImageData, ImgclfError, Predictor
from imgclf.inference import runtimes as onnx_runtime
from imgclf.training.embeddings import compute_embeddings  # noqa: E402
from imgclf.model import Classifier  # noqa: E402


def cached_runtimes(cache) -> list:
    return sorted((cache / "runtimes").glob("*.onnx")) if (cache / "runtimes").exists() else []


def test_a_model_file_is_built_once_and_cached(colour_model, private_cache):
    photos, path = colour_model
    first = Predictor.load(path)
    assert first.runtime == "onnx"  # the default on the CPU
    built = cached_runtimes(private_cache)
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    again = Predictor.load(path)
    assert cached_runtimes(private_cache) == built and built[0].stat().st_mtime_ns == stamp
    picture = sorted(photos.glob("red/*.jpg"))[0]
    assert again.predict(picture).probabilities == pytest.approx(
        Predictor.load(path, runtime="torch").predict(picture).probabilities, abs=1e-4)


def test_other_weights_get_their_own_runtime(private_cache):
    import torch

    network = Classifier.create("efficientnet_lite0", 2).eval()
    onnx_runtime.accelerated(network, 64, show_progress=False)
    with torch.no_grad():
        network.head.linear.weight.add_(1.0)
    onnx_runtime.accelerated(network, 64, show_progress=False)
    # the backbone's own graph ignores the head: one more file, shared by both heads
    onnx_runtime.accelerated(network, 64, embeddings_only=True, show_progress=False)
    onnx_runtime.accelerated(Classifier.create("efficientnet_lite0", 3), 64,
                             embeddings_only=True, show_progress=False)
    assert len(cached_runtimes(private_cache)) == 3


def test_embeddings_match_pytorch_and_each_other(colours, private_cache):
    data = ImageData.from_folder(colours, image_size=64, num_workers=0, verbose=False)
    network = Classifier.create(data.backbone, len(data.classes))
    fast = compute_embeddings(network, data, "train", show_progress=False)
    assert cached_runtimes(private_cache)  # onnxruntime computed them
    for row in (private_cache / "embeddings").rglob("*.npy"):
        row.unlink()
    slow = compute_embeddings(network, data, "train", show_progress=False, runtime="torch")
    assert fast.computed == slow.computed == len(data.items["train"])
    scale = np.abs(slow.features).max()
    assert np.abs(fast.features - slow.features).max() <= 1e-4 * max(1.0, scale)


def test_without_onnxruntime_pytorch_runs_it_and_says_how_to_install(colour_model,
                                                                      monkeypatch, capsys):
    photos, path = colour_model

    from imgclf.inference import graphs, predictor as predictor_module

    def missing(module, hint=graphs.ONNX_HINT):
        raise ImgclfError(hint)

    Predictor.load(path)  # its graph remembered: without onnxruntime it is not used
    monkeypatch.setattr(onnx_runtime, "require", missing)
    monkeypatch.setattr(predictor_module, "require", missing)
    monkeypatch.setattr(onnx_runtime, "_NOTED", set())
    predictor = Predictor.load(path)
    assert predictor.runtime == "torch"
    assert predictor.predict(sorted(photos.glob("blue/*.jpg"))[0]).label == "blue"
    assert "pip install 'imgclf[onnx]'" in capsys.readouterr().err
    with pytest.raises(ImgclfError, match=r"pip install 'imgclf\[onnx\]'"):
        Predictor.load(path, runtime="onnx")


def test_a_runtime_that_does_not_match_is_never_cached(colour_model, monkeypatch,
                                                       private_cache, capsys):
    _, path = colour_model
    monkeypatch.setattr(onnx_runtime, "RUNTIME_TOLERANCE", -1.0)  # nothing can match
    monkeypatch.setattr(onnx_runtime, "_NOTED", set())
    assert Predictor.load(path).runtime == "torch"
    assert "differ from PyTorch" in capsys.readouterr().err
    assert cached_runtimes(private_cache) == []
    with pytest.raises(ImgclfError, match="differ from PyTorch"):
        Predictor.load(path, runtime="onnx")


def test_the_cli_takes_a_runtime(colour_model, capsys):
    from imgclf.cli import main

    photos, path = colour_model
    picture = str(sorted(photos.glob("red/*.jpg"))[0])
    answers = {}
    for runtime in ("torch", "onnx"):
        assert main(["predict", str(path), picture, "--json", "--runtime", runtime]) == 0
        answers[runtime] = capsys.readouterr().out
    import json

    torch_row, onnx_row = (json.loads(answers[r].splitlines()[0]) for r in ("torch", "onnx"))
    assert torch_row["label"] == onnx_row["label"] == "red"
    assert torch_row["probability"] == pytest.approx(onnx_row["probability"], abs=2e-4)


def test_a_cached_file_cut_short_is_built_again(colour_model, private_cache):
    _, path = colour_model
    Predictor.load(path)
    [built] = cached_runtimes(private_cache)
    built.write_bytes(built.read_bytes()[:1000])  # a crash or a full disk, say
    predictor = Predictor.load(path)
    assert predictor.runtime == "onnx" and built.stat().st_size > 100_000


def test_a_cache_that_cannot_be_written_falls_back_to_pytorch(colour_model, monkeypatch,
                                                              tmp_path, capsys):
    photos, path = colour_model
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    monkeypatch.setenv("IMGCLF_CACHE", str(blocked))  # runtimes/ cannot be made under a file
    monkeypatch.setattr(onnx_runtime, "_NOTED", set())
    predictor = Predictor.load(path)
    assert predictor.runtime == "torch"
    assert predictor.predict(sorted(photos.glob("red/*.jpg"))[0]).label == "red"
    assert "PyTorch runs the network" in capsys.readouterr().err


# --- a cached graph is served only if it is the one built for the model (#27, item 8) -------

@pytest.mark.parametrize("damage", ["another network's graph", "one flipped byte"])
def test_a_cached_graph_that_is_not_the_models_is_built_again(colour_model, private_cache,
                                                              damage):
    photos, path = colour_model
    picture = sorted(photos.glob("red/*.jpg"))[0]
    expected = Predictor.load(path, runtime="torch").predict(picture).probabilities
    graph = Predictor.load(path).network.path
    if damage == "another network's graph":
        other = Classifier.create("efficientnet_lite0", 2).eval()
        graph.write_bytes(onnx_runtime.cached_graph(other, 64, show_progress=False).read_bytes())
    else:
        data = bytearray(graph.read_bytes())
        data[len(data) // 2] ^= 0xFF
        graph.write_bytes(bytes(data))
    again = Predictor.load(path)
    assert again.runtime == "onnx"
    assert again.predict(picture).probabilities == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("check", ["a JSON list", "accepted edited in, another graph"])
def test_an_int8_check_imgclf_did_not_write_is_not_trusted(colour_model, private_cache, check):
    photos, path = colour_model
    graph = Predictor.load(path).network.path
    result = graph.with_suffix(".int8.json")
    if check == "a JSON list":
        result.write_text("[1, 2]")
    else:  # as if a refused check had been edited, with some other graph dropped in
        result.write_text('{"accepted": true, "reason": "", "key": "x"}')
        onnx_runtime.int8_path(graph).write_bytes(graph.read_bytes())
    assert onnx_runtime.read_int8_check(graph) is None
    with pytest.raises(ImgclfError, match="no checked int8 version"):
        Predictor.load(path, int8=True)


# --- a model file loaded again opens its graph without torch (#30) --------------------------

PREDICT_WITHOUT_TORCH = """
import json, sys
from imgclf import load
predictor = load(sys.argv[1], acceptance=float(sys.argv[3]) if len(sys.argv) > 3 else None)
answer = predictor.predict(sys.argv[2])
print(json.dumps({"torch": "torch" in sys.modules, "runtime": predictor.runtime,
                  "probabilities": answer.probabilities, "score": answer.outlier_score,
                  "threshold": predictor.threshold}))
"""


def _predict_in_a_new_process(path, picture, *acceptance) -> dict:
    import json
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", PREDICT_WITHOUT_TORCH, str(path),
                             str(picture), *map(str, acceptance)], capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_model_loaded_again_predicts_without_torch(colour_model, private_cache):
    photos, path = colour_model
    picture = sorted(photos.glob("blue/*.jpg"))[0]
    first = _predict_in_a_new_process(path, picture)  # builds the graph, remembers it
    assert first["torch"] and first["runtime"] == "onnx"
    again = _predict_in_a_new_process(path, picture)
    assert not again["torch"] and again["runtime"] == "onnx"
    # the same graph, the same threshold: the same answer as the first, full load
    assert again["probabilities"] == first["probabilities"]
    assert again["score"] == first["score"] and again["threshold"] == first["threshold"]
    assert again["probabilities"] == pytest.approx(
        Predictor.load(path, runtime="torch").predict(picture).probabilities, abs=1e-4)
    # another acceptance moves the threshold from the scores in the file, still without torch
    moved = _predict_in_a_new_process(path, picture, 0.5)
    assert not moved["torch"]
    assert moved["threshold"] == pytest.approx(
        Predictor.load(path, acceptance=0.5).threshold) and moved["threshold"] < again["threshold"]


def test_an_edited_model_file_is_never_run_by_the_graph_remembered_for_it(
        colour_model, private_cache, tmp_path):
    from imgclf import ModelFileError

    photos, original = colour_model
    path = tmp_path / "model.imgclf"
    path.write_bytes(original.read_bytes())
    Predictor.load(path)  # remembered
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum"):
        Predictor.load(path)


def test_a_remembered_graph_is_forgotten_when_the_code_or_the_graph_changes(
        colour_model, private_cache, monkeypatch):
    from imgclf.inference import graphs

    photos, path = colour_model
    graph = Predictor.load(path).network.path
    assert graphs.remembered_graph(path) == graph
    monkeypatch.setattr(graphs, "environment", lambda: {"code": "another imgclf"})
    assert graphs.remembered_graph(path) is None
    monkeypatch.undo()
    graph.write_bytes(graph.read_bytes() + b"\0")  # no longer the graph that was checked
    assert graphs.remembered_graph(path) is None
    assert Predictor.load(path).runtime == "onnx"  # built again, and remembered again
    assert graphs.remembered_graph(path) is not None
