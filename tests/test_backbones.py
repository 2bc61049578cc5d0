"""The backbone registry: packaged weights load exactly, bad weights fail loudly, offline is clear."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from imgclf import BackboneError, create_backbone, list_backbones
from imgclf.backbones import REGISTRY, _packaged_weights_file, get_backbone, input_config


def test_packaged_weights_load_tensor_for_tensor():
    network = create_backbone("efficientnet_lite0", imagenet_head=True)
    source = torch.load(_packaged_weights_file(REGISTRY["efficientnet_lite0"].weights_package),
                        map_location="cpu", weights_only=True)
    loaded = network.state_dict()
    assert len(source) == len(loaded) == 296
    for (their_name, theirs), (name, ours) in zip(source.items(), loaded.items()):
        assert torch.equal(theirs, ours), (their_name, name)


def test_without_imagenet_head_the_network_returns_features():
    network = create_backbone("efficientnet_lite0")
    features = network(torch.zeros(2, 3, 224, 224))
    assert features.shape == (2, network.num_features) == (2, 1280)


@pytest.mark.parametrize("name, size", [("efficientnet_lite0", 224), ("efficientnet_lite2", 260)])
def test_input_config_comes_from_timm(name, size):
    config = input_config(create_backbone(name, pretrained=False))
    assert config.image_size == size
    assert config.mean == (0.5, 0.5, 0.5) and config.std == (0.5, 0.5, 0.5)
    assert config.interpolation == "bicubic"


def test_weights_file_round_trips_through_safetensors_and_pth(tmp_path):
    from safetensors.torch import save_file

    original = create_backbone("efficientnet_lite0", pretrained=False, imagenet_head=True)
    state = {k: v.contiguous() for k, v in original.state_dict().items()}
    save_file(state, tmp_path / "w.safetensors")
    torch.save({"state_dict": state}, tmp_path / "w.pth")
    for filename in ("w.safetensors", "w.pth"):
        loaded = create_backbone("efficientnet_lite0", weights=tmp_path / filename,
                                 imagenet_head=True)
        assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())


def test_weights_of_another_architecture_fail_loudly(tmp_path):
    from safetensors.torch import save_file

    other = create_backbone("efficientnet_lite2", pretrained=False, imagenet_head=True)
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, tmp_path / "w.safetensors")
    with pytest.raises(BackboneError, match="of the wrong shape"):
        create_backbone("efficientnet_lite0", weights=tmp_path / "w.safetensors")


def test_packaged_file_with_a_wrong_shape_is_refused(tmp_path, monkeypatch):
    path = _packaged_weights_file(REGISTRY["efficientnet_lite0"].weights_package)
    state = torch.load(path, map_location="cpu", weights_only=True)
    first = next(iter(state))
    state[first] = torch.zeros(1, 1, 1, 1)
    bad = tmp_path / "models" / "bad.pth"
    bad.parent.mkdir()
    torch.save(state, bad)
    monkeypatch.setattr("imgclf.backbones._packaged_weights_file", lambda package: bad)
    with pytest.raises(BackboneError, match=rf"tensor 0 '{first}' has shape \(1, 1, 1, 1\)"):
        create_backbone("efficientnet_lite0")


def test_unknown_name_says_what_to_use():
    with pytest.raises(BackboneError, match="efficientnet_lite0"):
        get_backbone("resnet_made_up_999")


def test_any_timm_name_is_accepted_without_weights():
    network = create_backbone("resnet18", pretrained=False)
    assert network.num_features == 512


def test_hub_backbone_offline_fails_with_one_clear_sentence(tmp_path):
    # A subprocess, so HF_HUB_OFFLINE is read fresh; an empty cache; the network is never used.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    code = ("from imgclf import create_backbone\n"
            "try:\n    create_backbone('resnet34')\n"
            "except Exception as e:\n    print(type(e).__name__, e)\n")
    output = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            timeout=120).stdout
    assert output.startswith("BackboneError")
    assert "'resnet34' are not on this computer" in output
    assert "efficientnet_lite0, efficientnet_lite1, efficientnet_lite2" in output


def test_list_backbones_reports_offline_availability(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    rows = {row["name"]: row for row in list_backbones()}
    assert rows["efficientnet_lite0"]["offline"] is True
    assert rows["efficientnet_lite0"]["parameters"] == sum(
        p.numel() for p in create_backbone("efficientnet_lite0", pretrained=False,
                                           imagenet_head=True).parameters())
    assert rows["resnet18"]["source"] == "hub"
