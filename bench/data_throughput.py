"""Training images/second with augmentation on hymenoptera: first epoch (cold cache) and second.

The first epoch includes reading and verifying every file once and writing the resized
copies; later epochs read only the copies. Prints one JSON line.
Run: python bench/data_throughput.py [DATA]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from imgclf.backbones import input_config_for
from imgclf.data.imagedata import ImageData, default_workers

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "hymenoptera"


def epoch(loader) -> int:
    return sum(len(images) for images, *_ in loader if images is not None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", nargs="?", default=str(DEFAULT))
    args = parser.parse_args()
    result = {"benchmark": "data_throughput", "data": Path(args.data).name,
              "workers": default_workers(), "cpus": os.cpu_count()}
    input_config_for("efficientnet_lite0")  # import timm before the clock starts
    with tempfile.TemporaryDirectory() as cache:
        os.environ["IMGCLF_CACHE"] = cache  # a cold cache, whatever ran before
        for label, use_cache in (("cached", True), ("uncached", False)):
            start = time.perf_counter()
            data = ImageData.from_folder(args.data, cache=use_cache, verbose=False)
            loader = data.train_loader()
            images = epoch(loader)
            first = time.perf_counter() - start
            start = time.perf_counter()
            images = epoch(loader)
            second = time.perf_counter() - start
            result[f"{label}_epoch1_images_per_second"] = round(images / first, 1)
            result[f"{label}_epoch2_images_per_second"] = round(images / second, 1)
        result["train_images_per_epoch"] = images
    print(json.dumps(result))


if __name__ == "__main__":
    main()
