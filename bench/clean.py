"""`imgclf clean` on hymenoptera with seeded damage: does it find what was planted?

A copy of hymenoptera (train/ and val/) gets, seeded:
- 10% of its readable training pictures' labels flipped (moved to the other class folder);
- 10 off-topic pictures: ImageNet sample photos of neither ants nor bees, put in the classes;
- 10 copies of training pictures, re-encoded, resized or cropped: 4 in their own class, 3 in
  the other class (conflicts), 3 in validation (leakage).

Prints one JSON line: precision and recall per kind, the seconds of `imgclf clean` and of
`imgclf train --mode probe` on the damaged copy (each from an empty cache, side by side), and
the validation accuracy (on hymenoptera's own val/ pictures) of probes trained on the damaged
data, on it after `imgclf clean --auto`, and on the original data.

`--second-backbone NAME` runs `imgclf clean --second-backbone NAME` instead, and times the
plain `imgclf clean` beside it (from its own empty cache).

Run: python bench/clean.py [--seed 0] [--second-backbone efficientnet_lite2]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
HYMENOPTERA = SHARED / "hymenoptera"
IMAGENET = SHARED / "imagenet-sample-100"
ANT_OR_BEE = ("n02219486", "n02206856")  # ImageNet's ant and bee classes
SUFFIXES = (".jpg", ".jpeg", ".png")


def damage(root: Path, seed: int) -> dict:
    """Copy hymenoptera into root and damage it; returns what was planted (absolute paths)."""
    from PIL import Image

    rng = random.Random(seed)
    shutil.copytree(HYMENOPTERA, root)
    classes = ["ants", "bees"]
    pictures = sorted(p for c in classes for p in (root / "train" / c).iterdir()
                      if p.suffix.lower() in SUFFIXES)
    rng.shuffle(pictures)
    sources, pictures = pictures[:10], pictures[10:]  # copied, never flipped
    flips = pictures[:round(0.1 * (len(pictures) + 10))]
    flipped = []
    for path in flips:
        other = classes[1 - classes.index(path.parent.name)]
        target = root / "train" / other / path.name
        path.rename(target)
        flipped.append(target)
    strangers = sorted(p for p in IMAGENET.glob("*.JPEG") if not p.name.startswith(ANT_OR_BEE))
    off_topic = []
    for path in rng.sample(strangers, 10):
        target = root / "train" / rng.choice(classes) / f"web_{path.stem}.jpg"
        shutil.copyfile(path, target)
        off_topic.append(target)
    copies = []
    for number, source in enumerate(sources):
        picture = Image.open(source).convert("RGB")
        how = ("re-encoded", "resized", "cropped")[number % 3]
        if how == "resized":
            picture = picture.resize((picture.width * 3 // 5, picture.height * 3 // 5))
        elif how == "cropped":
            w, h = picture.size
            picture = picture.crop((w // 14, h // 14, w - w // 14, h - h // 14))
        label = source.parent.name
        split, folder_label = ("train", label) if number < 4 else (
            ("train", classes[1 - classes.index(label)]) if number < 7 else ("val", label))
        target = root / split / folder_label / f"copy_{number}_{source.stem}.jpg"
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=70 if how == "re-encoded" else 90)
        target.write_bytes(buffer.getvalue())
        copies.append((source, target))
    return {"flipped": flipped, "off_topic": off_topic, "copies": copies}


def scores(issues, planted: dict) -> dict:
    def rates(found: set, truth: set) -> dict:
        hits = len(found & truth)
        return {"found": len(found), "planted": len(truth), "true": hits,
                "precision": round(hits / len(found), 3) if found else None,
                "recall": round(hits / len(truth), 3) if truth else None}

    label = rates(issues.paths("label"), set(planted["flipped"]))
    off_topic = rates(issues.paths("off_topic"), set(planted["off_topic"]))
    pairs = {frozenset((issue.path, issue.other)) for issue in issues.rows
             if issue.kind in ("duplicate", "conflict", "leakage")}
    truth = {frozenset(pair) for pair in planted["copies"]}
    duplicates = {"found": len(pairs), "planted": len(truth), "true": len(pairs & truth),
                  "false_positives": sorted(" = ".join(sorted(p.name for p in pair))
                                            for pair in pairs - truth),
                  "recall": round(len(pairs & truth) / len(truth), 3)}
    return {"label": label, "off_topic": off_topic, "duplicates": duplicates}


def command(arguments: list[str], cache: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "imgclf", *arguments], check=True,
                   env={**os.environ, "IMGCLF_CACHE": str(cache)}, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def accuracy(model: Path) -> float:
    from imgclf import ImageData, evaluate, load

    data = ImageData.from_folder(HYMENOPTERA, verbose=False)
    return round(evaluate(load(model), data, split="valid", show_progress=False).summary()["accuracy"], 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--second-backbone", default=None,
                        help="clean with this backbone's embeddings too")
    args = parser.parse_args()
    if not HYMENOPTERA.is_dir() or not IMAGENET.is_dir():
        sys.exit(f"needs {HYMENOPTERA} and {IMAGENET}")
    from imgclf import ImageData
    from imgclf.cleaning.finding import find_issues
    from imgclf.config import CleanConfig

    config = CleanConfig(second_backbone=args.second_backbone)
    second = ["--second-backbone", args.second_backbone] if args.second_backbone else []

    work = Path(tempfile.mkdtemp(prefix="imgclf-clean-"))
    try:
        damaged = work / "damaged"
        planted = damage(damaged, args.seed)
        # side by side, each from an empty cache: a probe run, then clean
        probe_seconds = command(["train", str(damaged), "--mode", "probe", "--out",
                                 str(work / "model-damaged")], work / "cache-probe")
        clean_seconds = command(["clean", str(damaged), *second], work / "cache-clean")
        one_backbone = None  # the plain imgclf clean beside it, from its own empty cache
        if second:
            one_backbone = command(["clean", str(damaged)], work / "cache-one")
        os.environ["IMGCLF_CACHE"] = str(work / "cache-clean")  # warm: the figures only
        data = ImageData.from_folder(damaged, verbose=False)
        issues = find_issues(data, config=config, show_progress=False)
        found = scores(issues, planted)
        cleaned = work / "cleaned"
        shutil.copytree(damaged, cleaned)
        command(["clean", str(cleaned), "--auto", *second], work / "cache-clean")
        moved = sum(1 for _ in (cleaned / "_removed").rglob("*.*")) if (
            cleaned / "_removed").exists() else 0
        command(["train", str(cleaned), "--mode", "probe", "--out", str(work / "model-cleaned")],
                work / "cache-clean")
        command(["train", str(HYMENOPTERA), "--mode", "probe", "--out",
                 str(work / "model-original")], work / "cache-clean")
        result = {
            "benchmark": "clean", "seed": args.seed, "pictures": issues.pictures,
            **found,
            "issues": issues.summary(),
            "off_topic_threshold": round(issues.threshold, 4),
            "clean_seconds": round(clean_seconds, 1), "probe_seconds": round(probe_seconds, 1),
            "clean_vs_probe": round(clean_seconds / probe_seconds, 2),
            **({"second_backbone": args.second_backbone,
                "clean_one_backbone_seconds": round(one_backbone, 1),
                "clean_one_backbone_vs_probe": round(one_backbone / probe_seconds, 2)}
               if second else {}),
            "auto_fixes": len(issues.auto_decisions(config)), "auto_removed": moved,
            "accuracy": {"damaged": accuracy(work / "model-damaged" / "model.imgclf"),
                         "after_auto": accuracy(work / "model-cleaned" / "model.imgclf"),
                         "original": accuracy(work / "model-original" / "model.imgclf")},
        }
        print(json.dumps(result))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
