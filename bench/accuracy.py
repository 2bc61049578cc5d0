"""Accuracy, time and training speed per data set and per choice: one JSON line per data set.

Each run trains in a fresh process with a cold cache (as a new user's first run), seeded, and
reports validation accuracy and loss, wall seconds (loading the data to the end of training),
training pictures a second of its whole-network epochs, the plan it ran (phases and epochs),
its precision and freeze_early, and which point auto kept. Runs:

- ``auto``: ``imgclf train DATA``, the default (the probe, then one 6-epoch whole-network
  schedule fitted to the 10-minute limit, the better kept);
- ``probe``: the probe alone;
- ``auto-whole``: auto with every layer trained (``freeze_early=False``);
- ``auto-float32`` / ``auto-bfloat16``: auto in one precision;
- ``auto-read``: auto with every whole-network epoch reading its pictures
  (``reuse_views=False``; by default half of them reuse stored ones);
- ``auto-reuse``: auto with ``reuse_views=True`` (the default since it was measured here);
- ``auto-reuse-to-fit``: auto reusing pictures only when the time limit needs it
  (``reuse_views=None``, the default before);
- ``auto-torch``: auto with the frozen early layers run by PyTorch
  (``frozen_runtime="torch"``; the default gives them to onnxruntime on a CPU);
- ``auto-onnx``: auto insisting on onnxruntime for them (``frozen_runtime="onnx"``: the
  default on a CPU that has it, and an older checkout's opt-in);
- ``auto-progressive``: auto with progressive resizing (its schedule's epochs but the last on
  176-pixel crops);
- ``auto-backbone``: auto with ``backbone="auto"`` (efficientnet_lite0, 1, 2 probed within
  half the time limit, the lowest cross-validated loss trained);
- ``fine_tune``: fastai's recipe (2 head epochs, 4 whole-network epochs), no time limit.

``--steps N`` adds training pictures a second at 224 px through the real data loader (the
pictures decoded and augmented as training reads them), N steps of batch 16 after 3 to warm
up, for each (precision, freeze_early) this CPU can run, with freeze_early's frozen layers
run by PyTorch and by onnxruntime (frozen_runtime, where the code has it), and float32 with
freeze_early on progressive resizing's 176-pixel crops. The choices take turns in 4 rounds of
N/4 steps, the order reversed each round, so the machine's drift favours none of them; each
row gives its rounds too. Then, where the code has reuse_views, a whole epoch
that reads its pictures and one that reuses them (their mean is what a schedule gets). The
first row, float32 with every layer trained, is how imgclf trained before freeze_early
existed (with ``--src`` on that code, its data loader too: a worker process on 2 cores then,
none now).

``--baseline OLD_CHECKOUT/src`` with ``--steps N`` adds the issue's comparison: the training
step auto takes by default on this machine, this code against the older code's (each its own
default, its own loader), N steps each alone in a fresh process, in 4 turns whose order
alternates (old, new, new, old, ...), and the ratio of their means.

Run: python bench/accuracy.py [--datasets hymenoptera,blood-cells] [--runs auto,probe]
     [--steps 40] [--seed 42] [--src OTHER_CHECKOUT/src] [--baseline OLD_CHECKOUT/src]
``--src`` runs the children on another checkout's code (a git worktree of an older commit),
side by side with this one; a choice it does not know gives an "error" entry.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATASETS = HERE.parents[1] / "shared" / "datasets"
RUNS = {
    "auto": {},
    "probe": {"mode": "probe"},
    "auto-whole": {"freeze_early": False},
    "auto-float32": {"precision": "float32"},
    "auto-bfloat16": {"precision": "bfloat16"},
    "auto-progressive": {"progressive_resizing": True},
    "auto-read": {"reuse_views": False},
    "auto-reuse": {"reuse_views": True},
    "auto-reuse-to-fit": {"reuse_views": None},
    "auto-torch": {"frozen_runtime": "torch"},
    "auto-onnx": {"frozen_runtime": "onnx"},
    "auto-backbone": {"backbone": "auto"},
    "fine_tune": {"mode": "fine_tune", "time_limit": 0},
}


def run_child(arguments: list[str], src: str | None) -> dict:
    """One measurement in a fresh process with a cold imgclf cache; its last JSON line."""
    with tempfile.TemporaryDirectory() as cache:
        environment = {**os.environ, "IMGCLF_CACHE": cache}
        if src:
            environment["PYTHONPATH"] = os.pathsep.join(
                [str(Path(src).resolve()), environment.get("PYTHONPATH", "")])
        result = subprocess.run([sys.executable, __file__, *arguments], capture_output=True,
                                text=True, env=environment)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        return {"error": result.stderr.strip().splitlines()[-1:] or [f"exit {result.returncode}"]}
    return json.loads(lines[-1])


def train_child(data: str, run: str, seed: int) -> None:
    """Child process: one training run; prints one JSON line."""
    from imgclf import ImageData, train

    start = time.perf_counter()
    images = ImageData.from_folder(data, seed=seed, verbose=False)
    learner = train(images, seed=seed, verbose=False, **RUNS[run])
    seconds = time.perf_counter() - start
    history = learner.history
    speeds = [row["pictures_per_second"] for row in history
              if row.get("backbone_trained") and "pictures_per_second" in row]
    best = learner.best or {}
    print(json.dumps({
        "valid_accuracy": round(learner.metrics()["accuracy"], 4),
        "valid_loss": round(learner.metrics()["valid_loss"], 4),
        "wall_seconds": round(seconds, 1),
        # the schedule's: its pictures over its training seconds (every epoch trains on as
        # many), not the mean of the epochs' rates, which a fast reusing epoch would inflate
        "train_pictures_per_second": round(len(speeds) / sum(1 / s for s in speeds), 1)
        if speeds else None,
        "epochs": [row["phase"] for row in history],
        "kept": best.get("phase") if learner.config.restore_best else history[-1]["phase"],
        "precision": getattr(learner.config, "precision", None),
        "freeze_early": getattr(learner.config, "freeze_early", None),
        "progressive_resizing": getattr(learner.config, "progressive_resizing", None),
        "reuse_views": getattr(learner.config, "reuse_views", None),
        "frozen_runtime": getattr(learner.config, "frozen_runtime", None),
        "reused": [row.get("reused_views") for row in history],
        "backbone": learner.data.backbone,
        "backbone_choice": getattr(learner, "backbone_choice", None),
        "train_sizes": [row.get("train_size") for row in history],
        "valid_losses": [round(row["valid_loss"], 4) for row in history],
        "probe_seconds": round(history[0]["seconds"], 1) if history[0]["phase"] == "probe"
        else None,
    }))


def steps_child(data: str, steps: int, seed: int) -> None:
    """Child process: training pictures a second at 224 px per (precision, freeze_early)."""
    import torch

    from imgclf import ImageData, Learner, TrainConfig
    from imgclf.training.steps import device_has_bf16

    images = ImageData.from_folder(data, seed=seed, verbose=False)
    images = images.with_image_size(images.input.image_size)  # 224 for efficientnet_lite0
    choices = [("float32", False), ("float32", True)]
    if device_has_bf16(torch.device("cpu")):
        choices += [("bfloat16", False), ("bfloat16", True)]
    # frozen_runtime, where this code has it: the frozen layers by PyTorch, then onnxruntime
    runtimes = (["torch", "onnx"] if "frozen_runtime" in
                {field.name for field in dataclasses.fields(TrainConfig)} else [None])
    choices = [(precision, freeze_early, None, runtime) for precision, freeze_early in choices
               for runtime in (runtimes if freeze_early else runtimes[:1])]
    try:  # progressive resizing's smaller crops, where this code has it
        from imgclf.training.plan import small_size
        choices += [("float32", True, small_size(images.input.image_size), runtime)
                    for runtime in runtimes]
    except ImportError:
        pass
    base, runs = images, []
    for precision, freeze_early, crops, runtime in choices:
        images = base.with_image_size(base.input.image_size, train_size=crops)
        config = TrainConfig(precision=precision, freeze_early=freeze_early, device="cpu",
                             seed=seed, **({"frozen_runtime": runtime} if runtime else {}))
        learner = Learner.create(images, config=config, verbose=False)
        optimizer, trainable = whole_network(learner, freeze_early)
        loader = learner.data.train_loader()
        learner.seed_epoch(0, loader)
        learner.network.train()
        run = {"learner": learner, "loader": loader, "batches": iter(loader), "done": 0,
               "seconds": 0.0, "rounds": [], "step": (optimizer, trainable)}
        take_steps(run, 3)  # warming up
        runs.append(run)
    # the choices take turns, in rounds whose order reverses each time (A B C, C B A, ...),
    # so a machine that speeds up or slows down during the run favours none of them
    for index in range(ROUNDS):
        for run in (runs if index % 2 == 0 else runs[::-1]):
            done, seconds = take_steps(run, max(1, steps // ROUNDS))
            run["done"] += done
            run["seconds"] += seconds
            run["rounds"].append(round(done / seconds, 1))
    rows = []
    for run in runs:
        learner = run["learner"]
        rows.append({"precision": learner.config.precision,
                     "freeze_early": learner.config.freeze_early,
                     "frozen_runtime": getattr(learner.config, "frozen_runtime", None),
                     "image_size": learner.data.input.train_size
                     or learner.data.input.image_size,
                     "pictures_per_second": round(run["done"] / run["seconds"], 1),
                     "rounds": run["rounds"]})
    try:  # reuse_views, where this code has it: a whole epoch that reads, one that reuses
        from imgclf.training.frozen import TrainingViews
    except ImportError:
        TrainingViews = None
    if TrainingViews is not None:
        rows += [reuse_speeds(base, seed, TrainingViews, runtime) for runtime in runtimes]
    print(json.dumps({"steps": rows}))


def default_steps_child(data: str, steps: int, seed: int) -> None:
    """Child process: training pictures a second at 224 px of the whole-network step that
    this code's auto mode takes by default on this machine (TrainConfig() as Learner.create
    decides it for the device), alone in its process, through the code's own data loader;
    it runs on older checkouts too (``--baseline``). A step that reads its pictures: where
    the default reuses stored ones in half the epochs (reuse_views), those run faster
    (reuse_speeds' rows, and an auto run's training pictures a second)."""
    from imgclf import ImageData, Learner, TrainConfig

    images = ImageData.from_folder(data, seed=seed, verbose=False)
    images = images.with_image_size(images.input.image_size)
    learner = Learner.create(images, config=TrainConfig(device="cpu", seed=seed), verbose=False)
    freeze_early = bool(getattr(learner.config, "freeze_early", False))
    optimizer, trainable = whole_network(learner, freeze_early)
    loader = learner.data.train_loader()
    learner.seed_epoch(0, loader)
    learner.network.train()
    run = {"learner": learner, "loader": loader, "batches": iter(loader),
           "step": (optimizer, trainable)}
    take_steps(run, 3)  # warming up
    done, seconds = take_steps(run, steps)
    print(json.dumps({"precision": getattr(learner.config, "precision", "float32"),
                      "freeze_early": freeze_early,
                      "frozen_runtime": getattr(learner.config, "frozen_runtime", None),
                      "image_size": images.input.image_size,
                      "pictures_per_second": round(done / seconds, 1)}))


def default_speeds(folder: Path, args) -> dict:
    """This checkout's default training step against --baseline's, each alone in a fresh
    process, taking turns (baseline, this, this, baseline, ...) so that a machine that
    speeds up or slows down favours neither: pictures a second of each turn, the mean, and
    the ratio of the means."""
    turns: dict[str, list] = {"baseline": [], "this": []}
    for index in range(ROUNDS):
        order = ["baseline", "this"] if index % 2 == 0 else ["this", "baseline"]
        for which in order:
            result = run_child(["--child", "default-steps", "--data", str(folder), "--steps",
                                str(args.steps), "--seed", str(args.seed)],
                               args.baseline if which == "baseline" else args.src)
            turns[which].append(result)
    means = {}
    for which, results in turns.items():
        speeds = [result["pictures_per_second"] for result in results
                  if "pictures_per_second" in result]
        means[which] = round(sum(speeds) / len(speeds), 1) if speeds else None
    return {"baseline_code": args.baseline,
            "baseline": {"turns": [r.get("pictures_per_second", r) for r in turns["baseline"]],
                         "mean": means["baseline"],
                         **{k: v for k, v in turns["baseline"][0].items()
                            if k != "pictures_per_second"}},
            "this": {"turns": [r.get("pictures_per_second", r) for r in turns["this"]],
                     "mean": means["this"],
                     **{k: v for k, v in turns["this"][0].items()
                        if k != "pictures_per_second"}},
            "ratio": round(means["this"] / means["baseline"], 2)
            if means["baseline"] and means["this"] else None}


# Rounds the step measurements take turns in (steps_child, default_speeds).
ROUNDS = 4


def take_steps(run: dict, count: int) -> tuple[int, float]:
    """count training steps of one choice of steps_child, from where its loader stopped:
    (pictures, seconds)."""
    learner, (optimizer, trainable) = run["learner"], run["step"]
    done, began = 0, time.perf_counter()
    for _ in range(count):
        try:
            batch, targets, _, _ = next(run["batches"])
        except StopIteration:
            run["batches"] = iter(run["loader"])
            batch, targets, _, _ = next(run["batches"])
        learner.train_step(batch, targets, optimizer, trainable)
        done += len(targets)
    return done, time.perf_counter() - began


def whole_network(learner, freeze_early: bool):
    """(an optimizer over the learner's layer groups at a small rate, the parameters it
    trains), the whole network unfrozen but its early layers when freeze_early."""
    import torch

    from imgclf.training.plan import DISCRIMINATIVE

    if freeze_early:
        learner.network.unfreeze(early=False)
    else:  # code from before freeze_early has unfreeze() alone
        learner.network.unfreeze()
    groups = learner.network.layer_groups(len(DISCRIMINATIVE))
    optimizer = torch.optim.AdamW([{"params": group, "lr": 1e-5} for group in groups])
    return optimizer, [p for group in groups for p in group]


def reuse_speeds(images, seed: int, TrainingViews, runtime: str | None) -> dict:
    """Training pictures a second, float32 with freeze_early and reuse_views at 224 px: an
    epoch that reads its pictures (and stores them), then one that reuses them, each whole,
    and the two together (a schedule takes them in turn, plan.reuses). runtime:
    frozen_runtime's, if any."""

    from imgclf import Learner, TrainConfig

    config = TrainConfig(precision="float32", freeze_early=True, reuse_views=True,
                         device="cpu", seed=seed,
                         **({"frozen_runtime": runtime} if runtime else {}))
    learner = Learner.create(images, config=config, verbose=False)
    optimizer, trainable = whole_network(learner, True)
    front = getattr(learner, "_front", None)
    views = TrainingViews(learner.network, learner.network.frozen_start(),
                          **({"front": front} if front is not None else {}))
    if front is not None:  # its graph opened (or built) before the timing, as a run does
        front.prepare(views.start, [images.input.train_size or images.input.image_size])
    learner._train_from = views.start
    loader = learner.data.train_loader()
    learner.network.train()
    speeds = []
    for reuse in (False, True):
        learner.seed_epoch(int(reuse), loader)
        began, done = time.perf_counter(), 0
        for batch, targets, _, _ in views.epoch(loader, reuse=reuse, seed=seed):
            if batch is not None:
                learner.train_step(batch, targets, optimizer, trainable)
                done += len(targets)
        speeds.append((done, time.perf_counter() - began))
    return {"precision": "float32", "freeze_early": True, "reuse_views": True,
            "frozen_runtime": runtime,
            "image_size": images.input.train_size or images.input.image_size,
            "reading_epoch": round(speeds[0][0] / speeds[0][1], 1),
            "reusing_epoch": round(speeds[1][0] / speeds[1][1], 1),
            "pictures_per_second": round(sum(d for d, _ in speeds)
                                         / sum(t for _, t in speeds), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="hymenoptera,blood-cells",
                        help="folders under ../shared/datasets, or paths")
    parser.add_argument("--runs", default="auto,probe", help=f"of {', '.join(RUNS)}")
    parser.add_argument("--steps", type=int, default=0,
                        help="also measure this many training steps per speed choice")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--src", help="run the children on this checkout's src folder")
    parser.add_argument("--baseline", metavar="OTHER_CHECKOUT/src",
                        help="with --steps: also this code's default training step against "
                        "that checkout's, alone in fresh processes taking turns, and the ratio")
    parser.add_argument("--child", choices=["train", "steps", "default-steps"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "train":
        return train_child(args.data, args.run, args.seed)
    if args.child == "steps":
        return steps_child(args.data, args.steps, args.seed)
    if args.child == "default-steps":
        return default_steps_child(args.data, args.steps, args.seed)
    runs = [run for run in args.runs.split(",") if run]
    unknown = [run for run in runs if run not in RUNS]
    if unknown:
        parser.error(f"unknown runs {unknown}: choose from {', '.join(RUNS)}")
    for name in args.datasets.split(","):
        folder = Path(name) if Path(name).is_dir() else DATASETS / name
        if not folder.is_dir():
            print(json.dumps({"benchmark": "accuracy", "dataset": name,
                              "skipped": f"{folder} is not here"}))
            continue
        line = {"benchmark": "accuracy", "dataset": folder.name, "seed": args.seed,
                "code": args.src or "this checkout"}
        for run in runs:
            line[run] = run_child(["--child", "train", "--data", str(folder), "--run", run,
                                   "--seed", str(args.seed)], args.src)
        if args.steps:
            line["training_steps"] = run_child(["--child", "steps", "--data", str(folder),
                                                "--steps", str(args.steps), "--seed",
                                                str(args.seed)], args.src).get("steps")
        if args.steps and args.baseline:
            line["default_step_against_baseline"] = default_speeds(folder, args)
        import torch

        line.update(threads=torch.get_num_threads(), cpus=os.cpu_count(),
                    machine=platform.machine(), torch=torch.__version__)
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
