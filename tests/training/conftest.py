"""Fixtures of the training tests."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from imgclf import ImageData, Learner


@pytest.fixture
def timed_auto(make_photo, tmp_path, monkeypatch):
    """A run whose time the test decides: 44 tinted photos (40 training, 8 a batch: 5 steps an
    epoch); validation scripted (every epoch better) and, like the detector's pass, free; a
    training step of 1.2 s, an epoch 6 s (with 3 s to spare for a busy machine's checkpoints
    and set-up). Its after_probe callback records the probe's time and head; room(seconds)
    makes the time limit the probe's time plus seconds. PyTorch runs the frozen layers: the
    seconds onnxruntime's export takes on a cold cache would count against that time."""
    import imgclf.training.learner

    monkeypatch.setattr("imgclf.training.plan.FORWARD_SHARE", 0.0)
    monkeypatch.setattr("imgclf.training.steps.frozen_runtime_for",
                        lambda asked, device, freeze_early: ("torch", None))
    for label, tint in (("red", (180, 20, 20)), ("blue", (20, 20, 180))):
        for index in range(22):
            make_photo(f"data/{label}/{index}.jpg", size=(40, 40), tint=tint, noise=70)
    data = ImageData.from_folder(tmp_path / "data", image_size=32, batch_size=8,
                                 valid_fraction=0.1, num_workers=0, verbose=False)
    monkeypatch.setattr(Learner, "validate", lambda self: {  # every epoch helps
        "valid_loss": 1.0 / (1 + len(self.history)), "accuracy": 0.5, "error_rate": 0.5})
    real_step = Learner.train_step

    def slow_step(self, *arguments):
        time.sleep(1.2)
        return real_step(self, *arguments)

    monkeypatch.setattr(Learner, "train_step", slow_step)
    probe: dict = {}

    class AfterProbe:
        def on_epoch_end(self, learner, row):
            if row["phase"] == "probe":
                probe["spent"] = time.perf_counter() - learner._started
                probe["head"] = learner.network.head.linear.weight.detach().clone()

    def room(seconds: float) -> None:
        monkeypatch.setattr(imgclf.training.learner, "time_limit",
                            lambda config, device: probe.get("spent", 0.0) + seconds)

    return SimpleNamespace(data=data, probe=probe, after_probe=AfterProbe(), room=room)
