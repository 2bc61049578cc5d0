"""fastai's documented recipe on a folder, for bench/vs_fastai.py (runs in the fastai venv).

vision_learner(dls, "tf_efficientnet_lite0", metrics=error_rate).fine_tune(4) with the seeds'
data block (RandomResizedCrop(224, min_scale=0.5) per item, aug_transforms() per batch). timm
cannot download weights here, so timm.create_model is wrapped to load the same packaged
EfficientNet-Lite0 weights imgclf uses (through imgclf.backbones, every shape checked).
Prints one JSON line: validation accuracy and wall seconds (data loaders to end of training).
"""

from __future__ import annotations

import argparse
import json
import time

import timm

_create_model = timm.create_model


def _create_with_packaged_weights(name, pretrained=False, **options):
    if name == "tf_efficientnet_lite0" and pretrained:
        from imgclf.backbones import create_backbone

        source = create_backbone("efficientnet_lite0", imagenet_head=True).state_dict()
        model = _create_model(name, pretrained=False, **options)
        target = model.state_dict()
        state = {k: v for k, v in source.items() if k in target}
        assert all(state[k].shape == v.shape for k, v in target.items()), "weights do not fit"
        model.load_state_dict(state, strict=True)
        return model
    return _create_model(name, pretrained=pretrained, **options)


timm.create_model = _create_with_packaged_weights


def main() -> None:
    from fastai.vision.all import (ImageDataLoaders, RandomResizedCrop, aug_transforms,
                                   error_rate, vision_learner)

    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    start = time.perf_counter()
    loaders = ImageDataLoaders.from_folder(
        args.data, train="train", valid="val", seed=42, bs=args.batch_size,
        item_tfms=RandomResizedCrop(224, min_scale=0.5), batch_tfms=aug_transforms())
    learner = vision_learner(loaders, "tf_efficientnet_lite0", metrics=error_rate)
    with learner.no_bar(), learner.no_logging():
        learner.fine_tune(args.epochs)
    seconds = time.perf_counter() - start
    error = float(learner.validate()[1])
    print(json.dumps({"run": f"fastai fine_tune({args.epochs}) bs={args.batch_size}",
                      "valid_accuracy": round(1 - error, 4), "wall_seconds": round(seconds, 1)}))


if __name__ == "__main__":
    main()
