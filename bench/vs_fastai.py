"""imgclf against fastai on hymenoptera, same weights, same machine, one run.

Runs, each in a fresh process with a cold cache, timed from loading the data to the end of
training, one JSON line each: fastai's fine_tune(4) at batch 64 and 16 (in a separate
virtualenv: fastai is not a dependency of imgclf), imgclf probe, fine-tune and auto. Then the
ratios, then a learning curve (5, 10, 20 pictures per class and all, seeded subsets of train):
validation accuracy of probe and auto.

Run: python bench/vs_fastai.py [DATA] [--skip-fastai] [--skip-curve] [--modes probe,auto]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT = HERE.parents[1] / "shared" / "datasets" / "hymenoptera"
FASTAI = "fastai==2.8.12"


def fastai_python() -> Path:
    """A virtualenv with fastai that borrows torch and the rest from this one (a .pth file)."""
    ours = sysconfig.get_paths()["purelib"]
    key = hashlib.sha256(f"{FASTAI}|{ours}|addsitedir".encode()).hexdigest()[:10]
    venv = Path.home() / ".cache" / "imgclf" / f"bench-fastai-{key}"
    python = venv / "bin" / "python"
    if not (venv / ".ready").exists():
        print(f"Installing {FASTAI} into {venv} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig."
                                  "get_paths()['purelib'])"], capture_output=True, text=True,
                                 check=True).stdout.strip()
        # addsitedir, not a bare path: the .pth files in our site-packages must run too, among
        # them the editable install's finder, or `import imgclf` fails in the fastai venv
        Path(purelib, "imgclf_base.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        FASTAI], check=True)
        (venv / ".ready").touch()
    return python


def run_child(command: list[str]) -> dict:
    """Run one measurement in a fresh process with a cold imgclf cache; its last JSON line."""
    with tempfile.TemporaryDirectory() as cache:
        environment = {**os.environ, "IMGCLF_CACHE": cache}
        result = subprocess.run(command, capture_output=True, text=True, env=environment)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return json.loads(lines[-1])


def imgclf_run(data: str, mode: str) -> None:
    """Child process: train with imgclf in one mode and print one JSON line."""
    from imgclf import ImageData, train

    start = time.perf_counter()
    images = ImageData.from_folder(data, verbose=False)
    learner = train(images, mode=mode, verbose=False)  # each mode's default epochs
    seconds = time.perf_counter() - start
    print(json.dumps({"run": f"imgclf {mode}", "valid_accuracy":
                      round(learner.metrics()["accuracy"], 4), "wall_seconds": round(seconds, 1)}))


def learning_curve(data: str) -> None:
    """Child process: probe and auto on seeded subsets of train; one JSON line per size."""
    from imgclf import ImageData, train

    full = ImageData.from_folder(data, verbose=False)
    for per_class in (5, 10, 20, None):
        subset = full if per_class is None else full.subset(per_class, seed=42)
        row = {"learning_curve": per_class or "all",
               "train_images": len(subset.train)}
        for mode in ("probe", "auto"):
            start = time.perf_counter()
            learner = train(subset, mode=mode, verbose=False)
            row[f"{mode}_accuracy"] = round(learner.metrics()["accuracy"], 4)
            row[f"{mode}_seconds"] = round(time.perf_counter() - start, 1)
        print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", nargs="?", default=str(DEFAULT))
    parser.add_argument("--skip-fastai", action="store_true")
    parser.add_argument("--skip-curve", action="store_true")
    parser.add_argument("--modes", default="probe,fine_tune,auto",
                        help="imgclf modes to run (comma-separated)")
    parser.add_argument("--child", choices=["probe", "fine_tune", "auto", "curve"])
    args = parser.parse_args()
    if args.child == "curve":
        return learning_curve(args.data)
    if args.child:
        return imgclf_run(args.data, args.child)

    results = []
    if not args.skip_fastai:
        python = str(fastai_python())
        for batch_size in (64, 16):
            results.append(run_child([python, str(HERE / "fastai_recipe.py"), args.data,
                                      "--batch-size", str(batch_size)]))
            print(json.dumps(results[-1]), flush=True)
    for mode in args.modes.split(","):
        results.append(run_child([sys.executable, __file__, args.data, "--child", mode]))
        print(json.dumps(results[-1]), flush=True)
    runs = {row["run"]: row for row in results}
    fastai = [row for name, row in runs.items() if name.startswith("fastai")]
    if fastai and {"imgclf probe", "imgclf auto", "imgclf fine_tune"} <= set(runs):
        faster = min(fastai, key=lambda row: row["wall_seconds"])
        better = max(row["valid_accuracy"] for row in fastai)
        probe, auto = runs["imgclf probe"], runs["imgclf auto"]
        print(json.dumps({
            "ratios": "imgclf vs fastai",
            "probe_time_vs_faster_fastai": round(probe["wall_seconds"] / faster["wall_seconds"], 3),
            "probe_accuracy_minus_better_fastai": round(probe["valid_accuracy"] - better, 4),
            "auto_time_vs_faster_fastai": round(auto["wall_seconds"] / faster["wall_seconds"], 3),
            "auto_accuracy_minus_better_fastai": round(auto["valid_accuracy"] - better, 4),
            "fine_tune_time_vs_faster_fastai": round(
                runs["imgclf fine_tune"]["wall_seconds"] / faster["wall_seconds"], 3),
        }), flush=True)
    if not args.skip_curve:
        with tempfile.TemporaryDirectory() as cache:
            subprocess.run([sys.executable, __file__, args.data, "--child", "curve"], check=True,
                           env={**os.environ, "IMGCLF_CACHE": cache})


if __name__ == "__main__":
    main()
