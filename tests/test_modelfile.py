"""The model file's metadata is a ModelInfo: it round-trips, and older files still load."""

from __future__ import annotations

import json

import pytest

from imgclf import ImageData, ModelFileError, Predictor, train
from imgclf.modelfile import FORMAT_VERSION, _checksum, load_model, save_model


@pytest.fixture
def model(colour_model):
    return colour_model


def test_model_info_round_trips_through_the_file(model, tmp_path):
    _, path = model
    tensors, info = load_model(path)
    assert info.classes == ("blue", "red") and info.input.image_size == 64
    assert info.training.mode == "probe" and info.history[0]["phase"] == "probe"
    assert info.counts["red"]["train"] + info.counts["red"]["valid"] == 12
    again = save_model(tmp_path / "again.imgclf", tensors, info)
    assert load_model(again)[1] == info


def _write_format_1(path, tensors, metadata):
    """A file as imgclf wrote it before ModelInfo (format 1)."""
    from safetensors.torch import save_file

    header = {"format": "imgclf", "format_version": "1", "checksum": _checksum(tensors),
              "metadata": json.dumps(metadata)}
    save_file(tensors, str(path), metadata=header)


def test_a_format_1_file_still_loads_and_predicts(model, tmp_path):
    photos, path = model
    tensors, info = load_model(path)
    old = info.to_dict()
    old["input"] = {k: v for k, v in old["input"].items() if k != "resize"}
    old["resize"] = "squish"  # format 1 kept resize beside the input config
    old["data"] = {**old["data"], "image_size": 64, "resize": "squish",
                   "counts": old.pop("counts"), "augment": old.pop("augment")}
    for key in ("checkpoint", "created"):
        old.pop(key)
    _write_format_1(tmp_path / "old.imgclf", tensors, old)
    predictor = Predictor.load(tmp_path / "old.imgclf")
    assert predictor.input.resize == "squish" and predictor.info.counts == info.counts
    assert predictor.info.data == info.data and predictor.info.training == info.training
    assert predictor.predict(photos / "red" / "0.jpg").label == "red"


def test_a_newer_format_is_refused_with_what_to_do(model, tmp_path):
    from safetensors.torch import save_file

    _, path = model
    tensors, info = load_model(path)
    header = {"format": "imgclf", "format_version": str(FORMAT_VERSION + 1),
              "checksum": _checksum(tensors), "metadata": json.dumps(info.to_dict())}
    save_file(tensors, str(tmp_path / "new.imgclf"), metadata=header)
    with pytest.raises(ModelFileError, match="pip install -U imgclf"):
        Predictor.load(tmp_path / "new.imgclf")


def test_metadata_without_a_network_is_refused(model, tmp_path):
    _, path = model
    tensors, info = load_model(path)
    values = info.to_dict()
    del values["classes"]
    from safetensors.torch import save_file

    header = {"format": "imgclf", "format_version": str(FORMAT_VERSION),
              "checksum": _checksum(tensors), "metadata": json.dumps(values)}
    save_file(tensors, str(tmp_path / "bad.imgclf"), metadata=header)
    with pytest.raises(ModelFileError, match="does not describe a network"):
        load_model(tmp_path / "bad.imgclf")


def test_the_input_has_one_home(colours):
    data = ImageData.from_folder(colours, resize="pad", num_workers=0, verbose=False)
    learner = train(data, mode="probe", verbose=False)
    info = learner.info()
    assert info.input == learner.data.input and info.input.resize == "pad"
    assert info.input.image_size == 288  # probe mode's own size, the one it read pictures at
    assert "image_size" not in info.data.to_dict() and "resize" not in info.data.to_dict()
