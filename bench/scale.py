"""How imgclf grows with the data: 120 classes of generated pictures, 1k, 5k and 20k of them.

For each size, in a fresh process with an empty cache (so each size's peak memory is its own):
seconds per stage and pictures/s of reading the folder (scan and verify), embedding every
picture (the probe's cache), fitting the probe (head, detector, model file), evaluating the
validation pictures through Predictor, and reading the whole embedding cache back; peak
resident memory of the process and of its DataLoader workers. Then whether time grows
linearly (seconds per picture at 20k against 1k) and memory stays flat (peak at 20k against
5k, target <= 1.2x). Prints one JSON line.

The pictures: 120 classes, each a colour and a shape on its own noisy background, 128x96
JPEGs, drawn once into --folder and reused. --image-size (default 160) sets the probe's
input: smaller than its 288 default so that 26,000 pictures embed in minutes on 2 cores;
the shape of the curves, not the absolute speed, is what this measures (bench/throughput.py
has the speed at each size).

With --auto, each size also trains in auto mode (the probe again from the cached embeddings,
then whole-network epochs fitted to the CPU's 10-minute time limit): its seconds, the phases
it ran, and the peak memory with it.

Run: python bench/scale.py [--sizes 1000,5000,20000] [--image-size 160] [--auto]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLASSES = 120


def draw(folder: Path, count: int, classes: int = CLASSES) -> Path:
    """`count` pictures in `classes` class folders (kept: a second run reuses them)."""
    from PIL import Image, ImageDraw

    target = folder / f"{count}"
    done = target / ".complete"
    if done.exists():
        return target
    palette = np.random.default_rng(0).integers(30, 226, (classes, 3))
    for index in range(count):
        label = index % classes
        rng = np.random.default_rng(index)
        background = rng.integers(0, 90, (96, 128, 3)) + (label * 7) % 60
        picture = Image.fromarray(np.clip(background, 0, 255).astype("uint8"))
        pen = ImageDraw.Draw(picture)
        x, y = rng.integers(10, 70), rng.integers(10, 40)
        size = rng.integers(24, 44)
        colour = tuple(int(c) for c in palette[label])
        shape = (label // 40)  # 3 shapes x 40 colours
        box = (x, y, x + size, y + size)
        if shape == 0:
            pen.ellipse(box, fill=colour)
        elif shape == 1:
            pen.rectangle(box, fill=colour)
        else:
            pen.polygon([(x, y + size), (x + size // 2, y), (x + size, y + size)], fill=colour)
        out = target / f"class_{label:03d}" / f"{index}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        picture.save(out, quality=88)
    done.touch()
    return target


def peak_memory_mb() -> dict:
    """Peak resident memory so far: this process, and its largest finished child."""
    scale = 1024 if sys.platform != "darwin" else 1024 * 1024  # ru_maxrss: KiB on Linux
    return {"process_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale, 1),
            "workers_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
                                / scale, 1)}


def one_size(folder: Path, image_size: int, with_auto: bool = False) -> dict:
    """The stages on one folder, in this process (called in a fresh one per size)."""
    from imgclf import ImageData, train
    from imgclf.model import Classifier
    from imgclf.training.embeddings import compute_embeddings

    stages = {}
    start = time.perf_counter()
    data = ImageData.from_folder(folder, image_size=image_size, valid_fraction=0.2, seed=0,
                                 verbose=False)
    stages["read_folder"] = time.perf_counter() - start
    pictures = len(data.items["train"]) + len(data.items["valid"])
    network = Classifier.create(data.backbone, len(data.classes))
    start = time.perf_counter()
    for split in ("train", "valid"):
        compute_embeddings(network, data, split, show_progress=False)
    stages["embed"] = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as output:
        start = time.perf_counter()
        learner = train(data, mode="probe", output=output, verbose=False)
        stages["probe_fit"] = time.perf_counter() - start
        start = time.perf_counter()
        evaluation = learner.evaluate()
        stages["evaluate"] = time.perf_counter() - start
    start = time.perf_counter()
    rows = sum(len(compute_embeddings(network, data, split, show_progress=False).features)
               for split in ("train", "valid"))
    stages["read_cache"] = time.perf_counter() - start
    probe_memory = peak_memory_mb()
    auto = None
    if with_auto:  # the default mode: the probe from the cache, then whole-network epochs
        with tempfile.TemporaryDirectory() as output:  # fitted to the CPU's time limit
            start = time.perf_counter()
            learner = train(data, mode="auto", output=output, verbose=False)
            stages["auto"] = time.perf_counter() - start
        auto = {"phases": [row["phase"] for row in learner.history],
                "accuracy": round(learner.metrics()["accuracy"], 4)}
    summary = evaluation.summary()
    worst = sorted(evaluation.per_class(), key=lambda row: row["f1"])[:3]
    return {"pictures": pictures, "classes": len(data.classes), "image_size": image_size,
            "seconds": {k: round(v, 2) for k, v in stages.items()},
            "pictures_per_second": {
                "read_folder": round(pictures / stages["read_folder"], 1),
                "embed": round(pictures / stages["embed"], 1),
                "evaluate": round(len(data.items["valid"]) / stages["evaluate"], 1),
                "read_cache": round(rows / stages["read_cache"], 1)},
            "accuracy": round(summary["accuracy"], 4),
            "lowest_f1": [(row["class"], round(row["f1"], 3)) for row in worst],
            "most_confused": evaluation.most_confused()[:3],
            "cache_files": rows, "peak_memory": probe_memory,
            **({"auto": auto, "peak_memory_with_auto": peak_memory_mb()} if with_auto else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,5000,20000")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--folder", default=str(Path(tempfile.gettempdir()) / "imgclf-scale"))
    parser.add_argument("--auto", action="store_true",
                        help="also train in auto mode (the default mode: the probe, then "
                             "whole-network epochs fitted to the 10-minute CPU time limit)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a child's folder
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_size(Path(args.one), args.image_size, args.auto)))
        return
    sizes = [int(size) for size in args.sizes.split(",")]
    runs = []
    for size in sizes:
        started = time.perf_counter()
        folder = draw(Path(args.folder), size)
        drawn = time.perf_counter() - started
        with tempfile.TemporaryDirectory(prefix="imgclf-scale-cache-") as cache:
            child = subprocess.run(
                [sys.executable, __file__, "--one", str(folder), "--image-size",
                 str(args.image_size), *(["--auto"] if args.auto else [])],
                env={**os.environ, "IMGCLF_CACHE": cache},
                capture_output=True, text=True, check=True)
        run = json.loads(child.stdout.strip().splitlines()[-1])
        run["draw_seconds"] = round(drawn, 1)
        print(json.dumps(run), file=sys.stderr, flush=True)
        runs.append(run)
    result = {"benchmark": "scale", "cpus": os.cpu_count(), "runs": runs}
    by_size = {run["pictures"]: run for run in runs}
    smallest, largest = min(by_size), max(by_size)

    def per_picture(run: dict) -> float:  # the probe's stages (auto's time is capped)
        return sum(v for k, v in run["seconds"].items() if k != "auto") / run["pictures"]

    result["seconds_per_picture_ratio"] = round(per_picture(by_size[largest])
                                                / per_picture(by_size[smallest]), 3)
    if len(by_size) >= 2:
        middle = sorted(by_size)[-2]
        result["peak_memory_ratio"] = round(
            by_size[largest]["peak_memory"]["process_mb"]
            / by_size[middle]["peak_memory"]["process_mb"], 3)
        result["peak_memory_between"] = [middle, largest]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
