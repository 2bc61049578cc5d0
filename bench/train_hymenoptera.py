"""Fine-tune on hymenoptera with imgclf's defaults; one JSON line with accuracy and wall seconds.

The same recipe as `imgclf train ../shared/datasets/hymenoptera` (auto mode).
Run: python bench/train_hymenoptera.py [DATA] [--mode auto|probe|fine_tune] [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from imgclf import ImageData, train
from imgclf.training.plan import whole_epochs

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "hymenoptera"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", nargs="?", default=str(DEFAULT))
    parser.add_argument("--epochs", type=int, default=None, help="default: the mode's")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--mode", default="auto", choices=["auto", "probe", "fine_tune"],
                        help="auto is what imgclf train does by default")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        os.environ["IMGCLF_CACHE"] = str(Path(folder) / "cache")  # cold cache: time it all
        start = time.perf_counter()
        data = ImageData.from_folder(args.data, backbone=args.backbone, verbose=False)
        learner = train(data, mode=args.mode, epochs=args.epochs, output=Path(folder) / "run",
                        verbose=False)
        seconds = time.perf_counter() - start
        size = (Path(folder) / "run" / "model.imgclf").stat().st_size
    final, best = learner.metrics(), learner.best or {}
    print(json.dumps({
        "benchmark": "train_hymenoptera", "backbone": args.backbone, "mode": args.mode,
        "epochs": whole_epochs(learner.config),  # planned; the phases run are in the history
        "valid_accuracy": round(final["accuracy"], 4), "valid_loss": round(final["valid_loss"], 4),
        "best_epoch": best.get("epoch"), "best_epoch_accuracy": round(best.get("accuracy", 0), 4),
        "wall_seconds": round(seconds, 1), "model_megabytes": round(size / 1e6, 1),
        "train_images": len(data.train), "valid_images": len(data.valid),
        "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
