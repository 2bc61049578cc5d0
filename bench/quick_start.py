"""The README's quick start, line by line, on a data set: one JSON line with each line's seconds.

ImageData.from_folder, train (auto), model.evaluate(), model.predict on a training picture and
on an ImageNet photo of none of the classes, model.export, load and predict: what a notebook
user waits for, from an empty cache. After the quick start's evaluate it also evaluates the
same model through the whole network over the pictures (``imgclf.evaluate(model, data)``),
side by side, so the two can be compared on one machine in one run.

Run: python bench/quick_start.py [DATA] [--mode auto|probe|fine_tune] [--backbone NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DEFAULT = SHARED / "hymenoptera"
STRANGER = SHARED / "imagenet-sample-100" / "n03791053_motor_scooter.JPEG"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", nargs="?", default=str(DEFAULT))
    parser.add_argument("--mode", default="auto", choices=["auto", "probe", "fine_tune"])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    args = parser.parse_args()
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        os.environ["IMGCLF_CACHE"] = str(Path(folder) / "cache")  # cold cache: time it all
        from imgclf import ImageData, evaluate, load, train

        def timed(name, call):
            start = time.perf_counter()
            result = call()
            seconds[name] = round(time.perf_counter() - start, 2)
            return result

        data = timed("from_folder", lambda: ImageData.from_folder(
            args.data, valid_fraction=0.2, seed=42, backbone=args.backbone, verbose=False))
        model = timed("train", lambda: train(data, mode=args.mode, verbose=False))
        evaluation = timed("evaluate", lambda: model.evaluate())
        picture = data.train[0].path
        known = timed("predict", lambda: model.predict(picture))
        stranger = (timed("predict_stranger", lambda: model.predict(STRANGER))
                    if STRANGER.exists() else None)
        path = Path(folder) / "model.imgclf"
        timed("export", lambda: model.export(path))
        loaded = timed("load", lambda: load(path))
        timed("predict_loaded", lambda: loaded.predict(picture))
        # the same evaluation through the whole network over the pictures, for comparison
        through = timed("evaluate_through_network",
                        lambda: evaluate(model, data, show_progress=False))
    print(json.dumps({
        "benchmark": "quick_start", "data": Path(args.data).name, "mode": args.mode,
        "backbone": args.backbone, "phases": [row["phase"] for row in model.history],
        "seconds": seconds, "in_all": round(sum(seconds.values())
                                            - seconds["evaluate_through_network"], 1),
        "evaluate_speedup": round(seconds["evaluate_through_network"]
                                  / max(seconds["evaluate"], 1e-3), 1),
        "accuracy": round(evaluation.summary()["accuracy"], 4),
        "same_answers": bool(np.allclose(evaluation.probabilities, through.probabilities,
                                         atol=1e-5)),
        "known": known.label, "stranger": stranger.label if stranger else None,
        "train_images": len(data.train), "valid_images": len(data.valid),
        "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
