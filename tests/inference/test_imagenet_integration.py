"""Wrongly loaded weights show up as poor ImageNet accuracy on 100 real photos."""

from __future__ import annotations

import pytest

from imgclf import classify_imagenet, find_images
from tests.conftest import shared_dataset

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "efficientnet_lite1",
                                      "efficientnet_lite2"])
def test_offline_backbone_top1_on_imagenet_sample(backbone):
    root = shared_dataset("imagenet-sample-100")
    wnids = (root / "imagenet_wnids.txt").read_text().split()
    paths = find_images(root)
    assert len(paths) == 100
    results, errors = classify_imagenet(paths, backbone=backbone, show_progress=False)
    assert not errors
    correct = sum(r.index == wnids.index(r.path.name.split("_")[0]) for r in results)
    assert correct / len(paths) >= 0.80, f"{backbone}: top-1 {correct}/100"
