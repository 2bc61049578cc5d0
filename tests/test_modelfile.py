"""The model file: safetensors + a ModelInfo; it round-trips with identical predictions, older
files still load, and a damaged, tampered or foreign file is refused with a reason."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from imgclf import ImageData, ModelFileError, Predictor, load, train
from imgclf.modelfile import FORMAT_VERSION, ModelInfo, _checksum, load_model, save_model

FAST = dict(image_size=64, batch_size=8, num_workers=0, verbose=False)


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
              "metadata": json.dumps(values)}
    header["checksum"] = _checksum(tensors, header)
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


def _edited(value):
    """A different value of the same JSON kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return list(reversed(value)) if len(set(map(str, value))) > 1 else value + [value[:1]]
    if isinstance(value, dict):
        return {**value, "edited": 1} if not value else {
            key: _edited(item) if key == next(iter(value)) else item
            for key, item in value.items()}
    return "edited"  # None


def _resave_with_header(source, target, change):
    """Copy a model file, letting change() edit its header, keeping the old checksum."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(source), framework="pt") as handle:
        header = dict(handle.metadata())
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    change(header)
    save_file(tensors, str(target), metadata=header)


FIELDS = [field.name for field in dataclasses.fields(ModelInfo)]


@pytest.mark.parametrize("name", FIELDS)
def test_an_edit_to_any_metadata_field_is_refused(model, tmp_path, name):
    _, path = model

    def change(header):
        values = json.loads(header["metadata"])
        values[name] = _edited(values[name])
        header["metadata"] = json.dumps(values)

    _resave_with_header(path, tmp_path / "edited.imgclf", change)
    with pytest.raises(ModelFileError, match="modified after it was saved"):
        Predictor.load(tmp_path / "edited.imgclf")


@pytest.mark.parametrize("edit", ["swap classes", "image size 999", "older format",
                                  "no checksum", "reformatted json"])
def test_the_header_itself_is_covered(model, tmp_path, edit):
    _, path = model

    def change(header):
        values = json.loads(header["metadata"])
        if edit == "swap classes":  # an ant labelled "bees 95%"
            values["classes"] = values["classes"][::-1]
        elif edit == "image size 999":
            values["input"]["image_size"] = 999
        elif edit == "older format":  # whose checksum covered the tensors only
            header["format_version"] = "3"
        elif edit == "no checksum":
            del header["checksum"]
        header["metadata"] = json.dumps(values, indent=1 if edit == "reformatted json" else None)

    _resave_with_header(path, tmp_path / "edited.imgclf", change)
    with pytest.raises(ModelFileError, match="modified after it was saved"):
        Predictor.load(tmp_path / "edited.imgclf")
    _resave_with_header(path, tmp_path / "same.imgclf", lambda header: None)
    assert Predictor.load(tmp_path / "same.imgclf").classes == ["blue", "red"]


def test_model_file_round_trips_with_identical_predictions(colours, tmp_path):
    data = ImageData.from_folder(colours, **FAST)
    learner = train(data, mode="fine_tune", epochs=1, freeze_epochs=1, verbose=False)
    path = learner.export(tmp_path / "colours.imgclf")
    loaded = load(path)
    assert loaded.classes == ["blue", "red"] and loaded.info.backbone == "efficientnet_lite0"
    for item in data.valid:
        original = learner.predict(item.path).probabilities
        again = loaded.predict(item.path).probabilities
        assert original == pytest.approx(again, abs=1e-6)


@pytest.fixture
def model_file(colours, tmp_path):
    data = ImageData.from_folder(colours, **FAST)
    learner = train(data, mode="fine_tune", epochs=0, freeze_epochs=1, verbose=False)
    return learner.export(tmp_path / "m.imgclf")


def test_truncated_model_file_fails_cleanly(model_file):
    model_file.write_bytes(model_file.read_bytes()[: model_file.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="damaged"):
        Predictor.load(model_file)


def test_tampered_weights_fail_the_checksum(model_file):
    data = bytearray(model_file.read_bytes())
    data[-100] ^= 0xFF  # one byte of the last tensor
    model_file.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum"):
        Predictor.load(model_file)


def test_plain_safetensors_file_is_not_mistaken_for_a_model(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, tmp_path / "plain.safetensors")
    with pytest.raises(ModelFileError, match="not an imgclf model file"):
        Predictor.load(tmp_path / "plain.safetensors")


def test_metadata_that_does_not_fit_the_weights_is_refused(model_file, tmp_path):
    from dataclasses import replace

    from imgclf.modelfile import load_model, save_model

    tensors, info = load_model(model_file)
    # the head has two outputs
    save_model(tmp_path / "bad.imgclf", tensors, replace(info, classes=("a", "b", "c")))
    with pytest.raises(ModelFileError, match="do not fit"):
        Predictor.load(tmp_path / "bad.imgclf")


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load(tmp_path / "nothing.imgclf")


# --- every field is checked on load, also when the checksum was recomputed (#27, item 9) ----

def _resave_with_checksum(source, target, change_values=None, change_tensors=None):
    """Copy a model file with its metadata or tensors edited and the checksum recomputed, as
    someone who knows the format would."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(source), framework="pt") as handle:
        header = dict(handle.metadata())
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    values = json.loads(header["metadata"])
    if change_values:
        change_values(values)
    if change_tensors:
        change_tensors(tensors)
    header["metadata"] = json.dumps(values)
    header["checksum"] = _checksum(tensors, header)
    save_file(tensors, str(target), metadata=header)


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def change(values):
        for key in keys[:-1]:
            values = values[key]
        values[keys[-1]] = value

    return change


@pytest.mark.parametrize("edit, said", [
    (_set("classes", ["blue", "blue"]), "named twice"),
    (_set("classes", []), "classes must be names"),
    (_set("input", "crop_fraction", 0), "crop_fraction"),
    (_set("input", "interpolation", "bogus"), "interpolation"),
    (_set("input", "std", [0, 0, 0]), "std must be above 0"),
    (_set("input", "image_size", 0), "image_size"),
    (_set("unknown", "k", 0), "k must be"),
    (_set("unknown", "k", 1e6), "k must be"),
    (_set("unknown", "threshold", "x"), "threshold must be a number"),
    (_set("unknown", "threshold", float("nan")), "threshold must be a number"),
    (_set("unknown", "acceptance", 2), "acceptance"),
], ids=["repeated class", "no class", "crop 0", "bogus interpolation", "std 0", "size 0", "k 0",
        "k 1e6", "threshold text", "threshold NaN", "acceptance 2"])
def test_a_recomputed_checksum_does_not_pass_a_field_that_cannot_work(model, tmp_path, edit,
                                                                       said):
    _, path = model
    _resave_with_checksum(path, tmp_path / "edited.imgclf", change_values=edit)
    with pytest.raises(ModelFileError, match=f"does not describe a network.*{said}"):
        Predictor.load(tmp_path / "edited.imgclf")


def test_weights_that_are_not_numbers_are_refused(model, tmp_path):
    _, path = model

    def poison(tensors):
        name = next(name for name in tensors if tensors[name].is_floating_point())
        tensors[name] = tensors[name].clone()
        tensors[name].view(-1)[0] = float("nan")

    _resave_with_checksum(path, tmp_path / "nan.imgclf", change_tensors=poison)
    with pytest.raises(ModelFileError, match="not numbers"):
        Predictor.load(tmp_path / "nan.imgclf")


def test_settings_a_file_predates_read_as_what_it_did():
    from imgclf.config import TrainConfig
    from imgclf.modelfile import config_from_dict

    # written before freeze_early existed: every layer trained, and a resumed run goes on so
    old = config_from_dict(TrainConfig, {"mode": "auto", "unknown_acceptance": 0.9})
    assert old.freeze_early is False and old.acceptance == 0.9
    assert config_from_dict(TrainConfig, {"freeze_early": True}).freeze_early is True
    assert config_from_dict(TrainConfig, TrainConfig().to_dict()) == TrainConfig()
