"""int8: made and checked against float on the validation pictures before anything runs it;
refused when it loses accuracy; then used by predict, evaluate, serve and ONNX export."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="needs the onnx extra")

import imgclf  # noqa: E402
from imgclf import ImageData, ImgclfError, Predictor
from imgclf.inference import int8 as int8_module
from imgclf.cli import main  # noqa: E402


def colour_data(photos):
    return ImageData.from_folder(photos, image_size=64, num_workers=0, verbose=False)


def test_int8_is_checked_then_runs_predict_evaluate_and_export(colour_model, tmp_path, capsys,
                                                              private_cache):
    # private_cache by name: no int8 check of this model's graph may be there before it
    photos, path = colour_model
    with pytest.raises(ImgclfError, match="imgclf evaluate MODEL DATA --int8"):
        Predictor.load(path, int8=True)  # not checked on this machine yet

    check = imgclf.quantize(path, colour_data(photos), show_progress=False)
    assert check.accepted and check.pictures == len(colour_data(photos).valid)
    assert check.int8_accuracy >= check.float_accuracy - int8_module.MAX_LOSS
    assert check.calibration_pictures == len(colour_data(photos).train)  # fewer than 64 here

    fast, plain = Predictor.load(path, int8=True), Predictor.load(path)
    assert (fast.runtime, plain.runtime) == ("int8", "onnx")
    pictures = sorted(photos.glob("*/*.jpg"))
    # the classes: the unknown flag is a threshold at 98% acceptance, free to differ on one
    answers = [p.closest for p in fast.predict_batch(pictures, show_progress=False)]
    assert answers == [p.closest for p in plain.predict_batch(pictures, show_progress=False)]
    assert answers == [picture.parent.name for picture in pictures]
    # the detector's threshold moves with the scores int8 gives the validation pictures
    assert fast.threshold != plain.threshold and fast.acceptance == plain.acceptance

    capsys.readouterr()
    assert main(["predict", str(path), str(pictures[0]), "--json", "--int8"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["closest"] == "blue"

    target = tmp_path / "int8.onnx"
    assert main(["export", str(path), "--onnx", str(target), "--int8"]) == 0
    assert "(int8)" in capsys.readouterr().out
    shipped = Predictor.load(target)
    assert shipped.runtime == "int8" and shipped.threshold == pytest.approx(fast.threshold)
    assert [p.closest for p in shipped.predict_batch(pictures, show_progress=False)] == answers
    assert target.stat().st_size < 0.5 * Predictor.load(path).network.path.stat().st_size


def test_int8_that_loses_accuracy_is_refused(colour_model, monkeypatch, capsys):
    photos, path = colour_model
    # int8 would have to beat float by 100 points: no graph can, so the check must refuse
    monkeypatch.setattr(int8_module, "MAX_LOSS", -1.0)
    check = imgclf.quantize(path, colour_data(photos), show_progress=False)
    assert not check.accepted and "at most -100.0 allowed" in check.reason
    with pytest.raises(ImgclfError, match="int8 was refused for this model"):
        Predictor.load(path, int8=True)
    capsys.readouterr()
    assert main(["evaluate", str(path), str(photos), "--int8"]) == 1
    assert "int8 refused" in capsys.readouterr().out
    assert main(["export", str(path), "--onnx", "x.onnx", "--int8"]) == 1
    assert "int8 was refused" in capsys.readouterr().err


def test_evaluate_int8_checks_then_reports_int8_accuracy(colour_model, capsys):
    photos, path = colour_model
    assert main(["evaluate", str(path), str(photos), "--int8", "--json"]) == 0
    said = capsys.readouterr()
    assert "int8 accepted: int8 accuracy" in said.err  # stdout stays one JSON line
    assert json.loads(said.out)["accuracy"] == pytest.approx(1.0)
    assert Predictor.load(path, int8=True).runtime == "int8"  # the check is kept


def test_int8_and_onnx_files_say_what_to_do(colour_model, tmp_path, capsys):
    photos, path = colour_model
    exported = tmp_path / "float.onnx"
    assert main(["export", str(path), "--onnx", str(exported)]) == 0
    with pytest.raises(ImgclfError, match="is an ONNX file"):
        Predictor.load(exported, int8=True)
    capsys.readouterr()
    assert main(["export", str(exported), "--onnx", str(tmp_path / "x.onnx"), "--int8"]) == 1
    assert "from a .imgclf model file" in capsys.readouterr().err
    with pytest.raises(ImgclfError, match="not from an ONNX file"):
        imgclf.quantize(Predictor.load(exported), colour_data(photos), show_progress=False)


def test_a_kept_check_is_redone_for_other_pictures(colour_model, make_photo, tmp_path):
    photos, path = colour_model
    first = imgclf.quantize(path, colour_data(photos), show_progress=False)
    again = imgclf.quantize(path, colour_data(photos), show_progress=False)
    assert again == first  # kept: the same pictures and code
    fewer = ImageData.from_folder(photos, image_size=64, num_workers=0, verbose=False,
                                  valid_fraction=0.5)
    other = imgclf.quantize(path, fewer, show_progress=False)
    assert other.pictures == len(fewer.valid) != first.pictures  # checked anew


def test_a_model_of_other_classes_is_not_calibrated_on_these_pictures(colour_model, make_photo,
                                                                      tmp_path):
    _, path = colour_model
    for label in ("cats", "dogs"):
        for index in range(6):
            make_photo(f"other/{label}/{index}.jpg")
    with pytest.raises(ImgclfError, match="are not the model's"):
        imgclf.quantize(path, colour_data(tmp_path / "other"), show_progress=False)


def test_tf_same_padding_folds_into_the_convolutions(private_cache):
    """The default backbone's "same" convolutions leave no Pad or shape arithmetic in the
    cached graph (1.4x faster), and it still matches PyTorch (checked when built)."""
    import onnx
    import torch

    from imgclf.inference import runtimes as onnx_runtime
    from imgclf.model import Classifier

    network = Classifier.create("efficientnet_lite0", 2).eval()
    path = onnx_runtime.cached_graph(network, 96, show_progress=False)
    kinds = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert not kinds & {"Pad", "Shape", "Ceil", "Gather"}
    pictures = torch.randn(2, 3, 96, 96)
    with torch.inference_mode():
        expected = network.infer(pictures, embeddings=True)[1].numpy()
    actual = onnx_runtime.OnnxNetwork(path).run(pictures.numpy())[1]
    assert np.abs(expected - actual).max() <= 1e-4 * max(1.0, np.abs(expected).max())
