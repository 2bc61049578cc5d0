"""Labelling a folder end to end: `imgclf predict MODEL FOLDER` against a hand-written PyTorch
loop on the same 1,000 pictures, each timed from its process's start to its last row. Prints
one JSON line.

The pictures: the shared 100-photo ImageNet sample and 9 resized, re-encoded copies of each
(0.5-1.5 times the side, JPEG quality 90), written once to a temporary folder. The model: a
hymenoptera probe model, trained first (or --model). The hand-written loop is what a user
writes in ten lines: the model's own network in PyTorch, channels_last, batch 32, one
DataLoader worker decoding with Pillow's draft mode, resize and centre crop.
`imgclf predict --json` runs with a warm runtime cache (one call on a single picture first,
as any second use of a model has); the time to its first row is when its first line reaches
the pipe. --src adds `imgclf predict` on another checkout's code (a git worktree of an older
commit), side by side, and whether its labels are the same.

--large N adds phone-sized photos: the first N hymenoptera validation photos of each class
enlarged to 4032 pixels on the long side (a 12-megapixel phone photo, JPEG quality 90), each
code's `imgclf predict` timed on them, with its accuracy (the closest class against the
folder's) and, with --src, the share of pictures both codes give the same label.

Run: python bench/predict_folder.py [--model MODEL.imgclf] [--src OTHER/src] [--copies 9]
     [--large 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "datasets"

# The loop a user writes by hand (runs in its own process: imports and loading count).
HAND_LOOP = """
import sys, time, torch
from PIL import Image
from torchvision.transforms import v2
from imgclf.modelfile import load_model
from imgclf.model import network_from_tensors

model, folder = sys.argv[1], sys.argv[2]
tensors, info = load_model(model)
network = network_from_tensors(tensors, info, model).eval().to(memory_format=torch.channels_last)
size = info.input.image_size
transform = v2.Compose([v2.Resize(size, interpolation=v2.InterpolationMode.BICUBIC),
                        v2.CenterCrop(size), v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                        v2.Normalize(info.input.mean, info.input.std)])

class Files(torch.utils.data.Dataset):
    def __init__(self, paths): self.paths = paths
    def __len__(self): return len(self.paths)
    def __getitem__(self, i):
        picture = Image.open(self.paths[i])
        picture.draft("RGB", (size, size))
        return transform(picture.convert("RGB"))

from pathlib import Path
paths = sorted(str(p) for p in Path(folder).iterdir())
loader = torch.utils.data.DataLoader(Files(paths), batch_size=32, num_workers=1)
rows = 0
with torch.inference_mode():
    for batch in loader:
        labels = network(batch.contiguous(memory_format=torch.channels_last)).argmax(1)
        for label in labels.tolist():
            print(paths[rows], info.classes[label], flush=True)
            rows += 1
"""


def make_pictures(folder: Path, copies: int) -> list[Path]:
    """The shared ImageNet sample and `copies` resized, re-encoded copies of each photo."""
    import random

    from PIL import Image

    sample = sorted((SHARED / "imagenet-sample-100").glob("*.JPEG"))
    if not sample:
        sys.exit(f"no ImageNet sample under {SHARED / 'imagenet-sample-100'}")
    generator = random.Random(0)
    for path in sample:
        with Image.open(path) as picture:
            picture = picture.convert("RGB")
            picture.save(folder / f"{path.stem}_0.jpg", quality=90)
            for copy in range(1, copies + 1):
                scale = generator.uniform(0.5, 1.5)
                size = (max(32, round(picture.width * scale)),
                        max(32, round(picture.height * scale)))
                picture.resize(size, Image.BICUBIC).save(folder / f"{path.stem}_{copy}.jpg",
                                                         quality=90)
    return sorted(folder.iterdir())


def make_large(folder: Path, per_class: int) -> list[Path]:
    """Hymenoptera validation photos enlarged to phone size, in class folders."""
    from PIL import Image

    for kind in ("ants", "bees"):
        (folder / kind).mkdir(parents=True)
        for path in sorted((SHARED / "hymenoptera" / "val" / kind).glob("*.jpg"))[:per_class]:
            with Image.open(path) as picture:
                picture = picture.convert("RGB")
                scale = 4032 / max(picture.size)
                picture.resize((round(picture.width * scale), round(picture.height * scale)),
                               Image.BICUBIC).save(folder / kind / path.name, quality=90)
    return sorted(folder.rglob("*.jpg"))


def accuracy_of(lines: list[str]) -> float:
    rows = [json.loads(line) for line in lines]
    return sum(row.get("closest") == Path(row["path"]).parent.name for row in rows) / len(rows)


def timed(command: list[str], environment: dict) -> dict:
    """Run a command; wall seconds to its first and last line of output, and its lines."""
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=environment)
    first, lines = None, []
    for line in process.stdout:
        if first is None:
            first = time.perf_counter() - began
        lines.append(line)
    error = process.stderr.read()
    if process.wait() != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{error[-3000:]}")
    return {"seconds": time.perf_counter() - began, "first_row": first, "lines": lines}


def labels_of(lines: list[str]) -> dict[str, str]:
    labels = {}
    for line in lines:
        row = json.loads(line)
        labels[row["path"]] = row.get("label", "error")
    return labels


def environment_for(src: str | None, cache: str) -> dict:
    environment = {**os.environ, "IMGCLF_CACHE": cache}
    if src:
        environment["PYTHONPATH"] = os.pathsep.join([str(Path(src).resolve()),
                                                     environment.get("PYTHONPATH", "")])
    return environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a model file (default: a hymenoptera probe, trained)")
    parser.add_argument("--src", help="also run imgclf predict on this checkout's src folder")
    parser.add_argument("--copies", type=int, default=9)
    parser.add_argument("--large", type=int, default=0,
                        help="phone-sized hymenoptera photos of each class (0: none)")
    args = parser.parse_args()
    imgclf = [sys.executable, "-m", "imgclf"]
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        (work / "pictures").mkdir()
        pictures = make_pictures(work / "pictures", args.copies)
        cache = str(work / "cache")
        model = args.model
        if model is None:
            model = str(work / "model" / "model.imgclf")
            subprocess.run([*imgclf, "train", str(SHARED / "hymenoptera"), "--mode", "probe",
                            "--out", str(work / "model")], check=True, capture_output=True,
                           env=environment_for(None, cache))
        line = {"benchmark": "predict_folder", "pictures": len(pictures)}
        runs = {"imgclf": None, **({"imgclf_src": args.src} if args.src else {})}
        for name, src in runs.items():  # warm each code's runtime cache on one picture
            subprocess.run([*imgclf, "predict", model, str(pictures[0])], check=True,
                           capture_output=True, env=environment_for(src, cache))
        hand = timed([sys.executable, "-c", HAND_LOOP, model, str(work / "pictures")],
                     environment_for(None, cache))
        line["hand_loop"] = {"seconds": round(hand["seconds"], 2),
                             "pictures_per_second": round(len(pictures) / hand["seconds"], 1),
                             "first_row": round(hand["first_row"], 2)}
        labels = {}
        for name, src in runs.items():
            result = timed([*imgclf, "predict", model, str(work / "pictures"), "--json"],
                           environment_for(src, cache))
            labels[name] = labels_of(result["lines"])
            line[name] = {"seconds": round(result["seconds"], 2),
                          "pictures_per_second": round(len(pictures) / result["seconds"], 1),
                          "first_row": round(result["first_row"], 2),
                          "rows": len(result["lines"]),
                          "times_hand_loop": round(hand["seconds"] / result["seconds"], 2)}
        if args.src:
            line["same_labels"] = labels["imgclf"] == labels["imgclf_src"]
        if args.large:
            large = make_large(work / "large", args.large)
            closest = {}
            for name, src in runs.items():
                result = timed([*imgclf, "predict", model, str(work / "large"), "--json"],
                               environment_for(src, cache))
                closest[name] = [json.loads(row).get("closest") for row in result["lines"]]
                line[f"large_{name}"] = {
                    "seconds": round(result["seconds"], 2),
                    "pictures_per_second": round(len(large) / result["seconds"], 2),
                    "accuracy": round(accuracy_of(result["lines"]), 4)}
            line["large_pictures"] = len(large)
            if args.src:
                line["large_same_labels"] = round(sum(
                    a == b for a, b in zip(closest["imgclf"], closest["imgclf_src"]))
                    / len(large), 4)
        import torch

        line.update(threads=torch.get_num_threads(), cpus=os.cpu_count(),
                    machine=platform.machine(), torch=torch.__version__)
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
