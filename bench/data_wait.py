"""How long the network waits for pictures: the share of a pass spent waiting on the loader.

Two passes over hymenoptera's training pictures, each through the DataLoader as imgclf builds
it (default workers: one fewer than the cores): the probe's embeddings (288 px, onnxruntime,
batch 32, each picture's square view read back from what verification stored) and one training
epoch's forward and backward passes (224 px crops of the cached copies, augmented, PyTorch).
For each: seconds waiting for the next batch, seconds in the network and the waiting share;
the embeddings also without workers (reading in the network's process), and from the originals
decoded again (as before views were stored), for comparison. Prints one JSON line.

Run: python bench/data_wait.py [DATA]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "hymenoptera"


def timed(batches, work) -> dict:
    """Iterate, timing the wait for each batch apart from the work done on it."""
    waiting = working = 0.0
    pictures = 0
    clock = time.perf_counter()
    for batch in batches:
        started = time.perf_counter()
        waiting += started - clock
        pictures += work(batch)
        clock = time.perf_counter()
        working += clock - started
    return {"pictures": pictures, "wait_seconds": round(waiting, 2),
            "network_seconds": round(working, 2),
            "wait_share": round(waiting / max(waiting + working, 1e-9), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", nargs="?", default=str(DEFAULT))
    args = parser.parse_args()
    os.environ.setdefault("IMGCLF_CACHE", tempfile.mkdtemp(prefix="imgclf-wait-"))
    import torch

    from imgclf import ImageData
    from imgclf.config import TrainConfig
    from imgclf.data.datasets import ImageFiles, collate, default_workers
    from imgclf.data.transforms import eval_transform
    from imgclf.inference.runtimes import accelerated
    from imgclf.model import Classifier
    from imgclf.training.learner import Learner
    from imgclf.training.plan import data_for

    data = data_for(TrainConfig(mode="probe"), ImageData.from_folder(args.data, verbose=False))
    network = Classifier.create(data.backbone, len(data.classes)).eval()
    runner = accelerated(network, data.input.image_size, embeddings_only=True,
                         show_progress=False)
    items = data.items["train"]
    passes = {}
    for name, pictures, workers in (
            ("embeddings_288_onnxruntime", data.plain(items), default_workers()),
            ("embeddings_288_onnxruntime_no_workers", data.plain(items), 0),
            ("embeddings_288_onnxruntime_originals_decoded",
             ImageFiles([item.path for item in items], eval_transform(data.input)),
             default_workers())):
        loader = torch.utils.data.DataLoader(pictures, batch_size=32, num_workers=workers,
                                             collate_fn=collate)
        with torch.inference_mode():
            passes[name] = timed(loader, lambda batch: len(
                runner.infer(batch[0].numpy(), embeddings=True)[1]))
    learner = Learner.create(data, verbose=False)
    learner.network.unfreeze()
    optimizer = torch.optim.AdamW(learner.network.parameters(), lr=1e-5)
    trainable = list(learner.network.parameters())
    train_loader = learner.data.train_loader()
    learner.seed_epoch(0, train_loader)
    learner.network.train()
    training = timed(train_loader, lambda batch: (
        learner.train_step(batch[0], batch[1], optimizer, trainable), len(batch[0]))[1])
    print(json.dumps({
        "benchmark": "data_wait", "cpus": os.cpu_count(), "workers": default_workers(),
        **passes, "training_epoch_224_torch": training}))


if __name__ == "__main__":
    main()
