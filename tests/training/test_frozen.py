"""The frozen early layers' output computed once: the same figures as the whole network."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from imgclf import ImageData, Learner, TrainConfig
from imgclf.inference import loop
from imgclf.model import Classifier
from imgclf.training.frozen import ValidationStart

FAST = dict(image_size=64, batch_size=8, num_workers=0, verbose=False)


def test_the_network_runs_in_stages_as_a_whole():
    network = Classifier.create("efficientnet_lite0", 3, pretrained=False).eval()
    images = torch.randn(2, 3, 64, 64)
    stages = network.stages()
    with torch.inference_mode():
        whole = network.features(images)
        middle = network.features(images, stop=7)
        assert torch.allclose(network.features(middle, start=7), whole, atol=1e-5)
        assert torch.allclose(network.infer(middle, start=7)[0], network(images), atol=1e-5)
    assert network.frozen_start() == 0
    network.unfreeze(early=False)  # freeze_early: the first layer group
    start = network.frozen_start()
    assert 0 < start < len(stages)
    assert all(not p.requires_grad for stage in stages[:start] for p in stage.parameters())
    assert any(p.requires_grad for p in stages[start].parameters())
    network.freeze()
    assert network.frozen_start() == len(stages)


def test_validation_from_stored_features_matches_the_whole_network(colours, tmp_path):
    from imgclf.data.datasets import ImageFiles, collate
    from imgclf.data.transforms import eval_transform

    data = ImageData.from_folder(colours, valid_fraction=0.5, **FAST)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a picture")
    paths = sorted(colours.rglob("*.jpg"))[:11]
    dataset = ImageFiles([*paths[:4], broken, *paths[4:]], eval_transform(data.input),
                         targets=[0, 1] * 6)
    loader = torch.utils.data.DataLoader(dataset, batch_size=5, collate_fn=collate)
    network = Classifier.create("efficientnet_lite0", 2, pretrained=False)
    network.unfreeze(early=False)
    plain = loop.run(network, loader, embeddings=True)
    assert [error.index for error in plain.errors] == [4]
    start = ValidationStart()
    first, second = (start.run(network, loader) for _ in range(2))
    assert start.stored is not None and start.full_seconds > 0
    for outputs in (first, second):
        assert (outputs.ok == plain.ok).all()
        assert [e.source for e in outputs.errors] == [e.source for e in plain.errors]
        ok = outputs.ok
        assert np.allclose(outputs.probabilities[ok], plain.probabilities[ok], atol=1e-5)
        assert np.allclose(outputs.embeddings[ok], plain.embeddings[ok], atol=1e-4)
    # a frozen weight changes (loaded, trained): the pictures are read again
    key = start.stored[0]
    with torch.no_grad():
        network.stages()[0].weight.mul_(0.5)
    changed = start.run(network, loader)
    assert start.stored[0] != key
    assert not np.allclose(changed.embeddings[changed.ok], first.embeddings[first.ok])
    # too large to keep: every pass through the whole network, the same figures, and no
    # second try at storing them while the frozen stages stay as they are
    small = ValidationStart(max_bytes=1)
    again = small.run(network, loader)
    assert small.stored is None and small.too_large is not None
    small.run(network, loader)
    assert small.too_large == start.stored[0]
    assert np.allclose(again.probabilities[again.ok], changed.probabilities[changed.ok],
                       atol=1e-5)


def test_a_network_without_frozen_stages_is_validated_whole(colours):
    data = ImageData.from_folder(colours, valid_fraction=0.5, **FAST)
    network = Classifier.create("efficientnet_lite0", 2, pretrained=False)
    network.unfreeze(early=True)
    start = ValidationStart()
    start.run(network, data.loader("valid", augment=False, shuffle=False))
    assert start.stored is None


@pytest.mark.parametrize("freeze_early", [True, False])
def test_training_validates_the_same_with_or_without_stored_features(colours, freeze_early):
    data = ImageData.from_folder(colours, valid_fraction=0.25, **FAST)
    config = TrainConfig(epochs=2, freeze_epochs=0, freeze_early=freeze_early, seed=3)
    learner = Learner.create(data, config=config, verbose=False)
    learner.fine_tune()
    # a pass after training: from stored features exactly when the early layers were frozen
    final = learner.validate()
    assert (learner._valid_start.stored is not None) is freeze_early
    plain = loop.run(learner.network, data.loader("valid", augment=False, shuffle=False))
    assert final["valid_loss"] == pytest.approx(
        loop.scores(plain.probabilities[plain.ok],
                    np.array(data.dataset("valid").targets)[plain.ok])["valid_loss"], abs=1e-5)


def _views_network():
    network = Classifier.create("efficientnet_lite0", 2, pretrained=False)
    network.unfreeze(early=False)
    return network.train(), network.frozen_start()


def test_an_epoch_that_reads_pictures_stores_them_and_the_next_reuses_them(colours):
    from imgclf.training.frozen import TrainingViews

    data = ImageData.from_folder(colours, valid_fraction=0.25, **FAST)
    loader = data.train_loader()
    network, start = _views_network()
    views = TrainingViews(network, start)
    read = views.epoch(loader, reuse=True, seed=1)  # nothing stored yet: pictures are read
    assert not read.reused and len(read) == len(loader)
    first = list(read)
    assert views.front_seconds() > 0
    again = views.epoch(loader, reuse=True, seed=1)
    assert again.reused and len(again) == len(first)
    second = list(again)
    assert [len(batch[1]) for batch in second] == [len(batch[1]) for batch in first]
    rows = {int(i): (f, int(t)) for f, t, ids, _ in first for i, f, t in zip(ids, f, t)}
    reused = {int(i): (f, int(t)) for f, t, ids, _ in second for i, f, t in zip(ids, f, t)}
    assert rows.keys() == reused.keys()
    assert all(torch.equal(rows[i][0], reused[i][0]) and rows[i][1] == reused[i][1]
               for i in rows)
    order = [int(i) for _, _, ids, _ in first for i in ids]
    assert [int(i) for _, _, ids, _ in second for i in ids] != order  # reshuffled
    # the stored epoch serves until an epoch reads pictures again (reuses decides when)
    assert views.epoch(loader, reuse=True, seed=2).reused
    reading = views.epoch(loader, reuse=False, seed=3)
    assert not reading.reused
    list(reading)  # an epoch stores its pictures as it trains on them
    assert views.epoch(loader, reuse=True, seed=4).reused  # now the new ones


@pytest.mark.parametrize("epochs, pattern", [
    (1, "R"), (2, "RU"), (3, "RUR"), (4, "RUUR"), (5, "RURUR"), (6, "RUURUR"), (7, "RURURUR"),
    (8, "RUURURUR")])
def test_half_the_epochs_reuse_pictures_and_the_last_reads_new_ones(epochs, pattern):
    from imgclf.training.plan import reuses

    said = "".join("U" if reuses(epoch, epochs) else "R" for epoch in range(epochs))
    assert said == pattern
    assert said.count("U") == epochs // 2  # what the time limit prices (plan.fit_phase)
    assert said[0] == "R" and (epochs < 3 or said[-1] == "R")
    assert not reuses(epochs, epochs)  # past the schedule: no epoch


def test_stored_pictures_are_not_reused_once_the_frozen_stages_change(colours):
    from imgclf.training.frozen import TrainingViews

    data = ImageData.from_folder(colours, valid_fraction=0.25, **FAST)
    network, start = _views_network()
    views = TrainingViews(network, start)
    list(views.epoch(data.train_loader(), reuse=False, seed=1))
    with torch.no_grad():
        network.stages()[0].weight.mul_(0.5)
    assert not views.epoch(data.train_loader(), reuse=True, seed=1).reused
    tiny = TrainingViews(network, start, max_bytes=1)
    list(tiny.epoch(data.train_loader(), reuse=False, seed=1))
    assert tiny.too_large and not tiny.epoch(data.train_loader(), reuse=True, seed=1).reused


def test_a_step_from_the_frozen_stages_output_is_the_whole_network_step(colours):
    from imgclf.config import TrainConfig
    from imgclf.training.steps import train_step

    data = ImageData.from_folder(colours, valid_fraction=0.25, **FAST)
    images, targets, _, _ = next(iter(data.train_loader()))
    results = []
    for start in (0, None):
        torch.manual_seed(0)
        network, frozen = _views_network()
        trainable = [p for p in network.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=1e-3)
        batch = images
        if start is None:
            start = frozen
            with torch.no_grad():
                batch = network.features(images.contiguous(memory_format=torch.channels_last),
                                         stop=start)
        loss = train_step(network, batch, targets, optimizer, trainable,
                          device=torch.device("cpu"), config=TrainConfig(precision="float32"),
                          parallel=None, start=start)
        results.append((loss, network.state_dict()))
    assert results[0][0] == pytest.approx(results[1][0], abs=1e-5)
    assert all(torch.allclose(results[0][1][k], results[1][1][k], atol=1e-5)
               for k in results[0][1])


def test_reuse_views_needs_freeze_early():
    from imgclf.training.steps import resolved

    cpu = torch.device("cpu")
    assert resolved(TrainConfig(), cpu, has_bf16=False)[0].reuse_views is True
    assert resolved(TrainConfig(reuse_views=None), cpu,
                    has_bf16=False)[0].reuse_views is None  # the limit's
    assert resolved(TrainConfig(reuse_views=True), cpu, has_bf16=False)[0].reuse_views is True
    assert resolved(TrainConfig(mode="fine_tune"), cpu, has_bf16=False)[0].reuse_views is False
    assert resolved(TrainConfig(freeze_early=False, reuse_views=True), cpu,
                    has_bf16=False)[0].reuse_views is False


@pytest.mark.parametrize("front, reused", [
    (0.0, [False]),  # reading pictures costs nothing: reusing them would not fit another epoch
    (2.0, [False, True]),  # it costs most of a step: the epoch that reuses them fits
])
def test_the_time_limit_reuses_pictures_only_to_fit_its_schedule(timed_auto, tmp_path,
                                                                  monkeypatch, capsys, front,
                                                                  reused):
    from imgclf import train
    from imgclf.training.frozen import TrainingViews

    # what each step of an epoch that reads pictures spends reading them, as if measured
    monkeypatch.setattr(TrainingViews, "front_seconds", lambda self: front)
    # the probe's time plus 9 s: one 6-s epoch of two fits, or two at 4.5 s on average
    timed_auto.room(9.0)
    learner = train(timed_auto.data, mode="auto", epochs=2, verbose=True, time_limit=1e9,
                    reuse_views=None, output=tmp_path / "run",
                    callbacks=[timed_auto.after_probe])
    said = capsys.readouterr().err
    assert [row["reused_views"] for row in learner.history[1:]] == reused
    # the decision is saved with the plan: a resumed run goes on the same way
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert settings["plan"][1]["reuse_views"] is (len(reused) == 2)
    assert ("Half of them reuse stored pictures to fit." in said) is (
        len(reused) == 2)
    assert learner.config.reuse_views is None  # the setting stays the user's: decided per run


@pytest.mark.parametrize("cut_after", [0, 1])  # resumed at epoch 2 or 3 of 4, both reusing
def test_a_run_resumed_at_an_epoch_that_reuses_pictures_ends_as_an_uninterrupted_one(
        colours, tmp_path, cut_after):
    from imgclf import train

    config = dict(mode="fine_tune", epochs=4, freeze_epochs=0, freeze_early=True,
                  reuse_views=True, learning_rate=5e-3, verbose=False)
    data = ImageData.from_folder(colours, valid_fraction=0.25, **FAST)
    whole = train(data, output=tmp_path / "whole", **config)
    assert [row["reused_views"] for row in whole.history] == [False, True, True, False]

    class Cut:
        def on_epoch_end(self, learner, row):
            if row["epoch"] == cut_after:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(data, output=tmp_path / "cut", callbacks=[Cut()], **config)
    resumed = Learner.resume(tmp_path / "cut", data, verbose=False)
    assert [row["reused_views"] for row in resumed.history] == [False, True, True, False]
    for key, value in whole.network.state_dict().items():  # bit for bit
        assert torch.equal(value, resumed.network.state_dict()[key]), key


def test_whole_network_epochs_read_and_reuse_pictures_in_turn(colours):
    data = ImageData.from_folder(colours, valid_fraction=0.25, **FAST)
    config = TrainConfig(epochs=3, freeze_epochs=0, freeze_early=True, reuse_views=True,
                         seed=3)
    learner = Learner.create(data, config=config, verbose=False)
    before = {k: v.clone() for k, v in learner.network.state_dict().items()}
    learner.fine_tune()
    assert [row["reused_views"] for row in learner.history] == [False, True, False]
    assert learner.settings()["training"]["reuse_views"] is True
    after = learner.network.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("head."))
    assert learner._train_from == 0  # lr_find and later phases start at the pictures


# --- the frozen stages by onnxruntime (TrainConfig.frozen_runtime) ---------------------------

def _relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max()) / max(1.0, float(b.abs().max()))


def test_the_frozen_front_computes_what_pytorch_does_and_follows_weight_changes(private_cache):
    # private_cache by name: the graphs it counts are its own (conftest.private_cache)
    from imgclf.cache import cache_folder
    from imgclf.inference.graphs import OnnxNetwork
    from imgclf.training.frozen import FrozenFront

    network, start = _views_network()
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    front = FrozenFront(network, show_progress=False)
    with torch.no_grad():
        want = network.features(images, stop=start)
    got = front(images, start)
    assert isinstance(front.graphs[64, 64], OnnxNetwork)  # onnxruntime ran it, not PyTorch
    assert got.shape == want.shape and not got.requires_grad
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert _relative_difference(got, want) < 1e-4
    assert network.training  # building the graph left the network in training mode
    built = sorted(cache_folder("runtimes").glob("*.onnx"))
    # another front of the same weights opens the cached graph; another size gets its own
    again = FrozenFront(network, show_progress=False)
    again(images, start)
    assert isinstance(again.graphs[64, 64], OnnxNetwork)
    assert sorted(cache_folder("runtimes").glob("*.onnx")) == built
    front(torch.randn(2, 3, 96, 96), start)
    assert (96, 96) in front.graphs and len(list(cache_folder("runtimes").glob("*.onnx"))) == 2
    # a frozen weight changes (loaded, say): the graphs are made anew, for the new weights
    with torch.no_grad():
        network.stages()[0].weight.mul_(0.5)
        changed = network.features(images, stop=start)
    assert _relative_difference(changed, want) > 1e-2
    assert _relative_difference(front(images, start), changed) < 1e-4
    assert list(front.graphs) == [(64, 64)]


def test_a_training_step_through_the_frozen_front_is_the_pytorch_step(colours):
    from imgclf.inference.graphs import OnnxNetwork
    from imgclf.training.frozen import FrozenFront
    from imgclf.training.steps import train_step

    data = ImageData.from_folder(colours, valid_fraction=0.25, **FAST)
    torch.manual_seed(0)  # the batch's order and augmentation
    images, targets, _, _ = next(iter(data.train_loader()))
    results = []
    for use_front in (False, True):
        torch.manual_seed(0)
        network, _ = _views_network()
        trainable = [p for p in network.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=1e-3)
        front = FrozenFront(network, show_progress=False) if use_front else None
        loss = train_step(network, images, targets, optimizer, trainable,
                          device=torch.device("cpu"), config=TrainConfig(precision="float32"),
                          parallel=None, front=front)
        # the step went through onnxruntime's graph, not PyTorch's fallback
        assert not use_front or isinstance(front.graphs[64, 64], OnnxNetwork)
        results.append((loss, [p.grad for p in trainable]))
    # the same loss and gradients (Adam's first step moves each weight by about the rate
    # whatever its gradient's size, so the weights themselves are compared by gradient)
    assert results[0][0] == pytest.approx(results[1][0], abs=1e-4)
    for torch_grad, onnx_grad in zip(results[0][1], results[1][1]):
        # onnxruntime's sums round differently (1e-5 of the features), and an untrained
        # network's ReLU6 masks can flip on that: 3e-4 at most on this batch
        assert float((onnx_grad - torch_grad).norm()) <= 1e-3 * float(torch_grad.norm())


def test_frozen_runtime_auto_is_onnxruntime_on_a_cpu_that_has_it(monkeypatch):
    from imgclf.errors import ImgclfError
    from imgclf.training import steps

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    auto = TrainConfig(frozen_runtime="auto")
    assert TrainConfig().frozen_runtime == "auto"  # the default
    assert steps.resolved(auto, cpu, has_bf16=False)[0].frozen_runtime == "onnx"
    for config, device in ((replace(auto, frozen_runtime="torch"), cpu),  # asked for
                           (replace(auto, freeze_early=False), cpu),  # nothing frozen
                           (replace(auto, mode="fine_tune"), cpu),
                           (replace(auto, freeze_early=True), cuda)):  # onnxruntime is the CPU's
        assert steps.resolved(config, device, has_bf16=False)[0].frozen_runtime == "torch"
    config, note = steps.resolved(TrainConfig(freeze_early=True, frozen_runtime="onnx"), cuda,
                                  has_bf16=False)
    assert config.frozen_runtime == "torch" and "CPU" in note
    config, note = steps.resolved(TrainConfig(frozen_runtime="onnx", freeze_early=False), cpu,
                                  has_bf16=False)  # asked for, with nothing frozen: said so
    assert config.frozen_runtime == "torch" and "nothing for it to run" in note
    with pytest.raises(ValueError, match="frozen_runtime"):
        TrainConfig(frozen_runtime="openvino")
    # without onnxruntime: auto falls back to PyTorch, and asking for it says how to install
    monkeypatch.setattr(steps.importlib.util, "find_spec", lambda name: None)
    assert steps.resolved(auto, cpu, has_bf16=False)[0].frozen_runtime == "torch"

    def missing(module, *args):
        raise ImgclfError(f"pip install 'imgclf[onnx]' ({module})")

    monkeypatch.setattr(steps, "require", missing)
    with pytest.raises(ImgclfError, match="pip install"):
        steps.resolved(TrainConfig(frozen_runtime="onnx"), cpu, has_bf16=False)


def test_a_run_with_the_frozen_front_trains_as_pytorch_does_and_saves_which(colours, tmp_path,
                                                                           monkeypatch):
    from imgclf.inference.graphs import OnnxNetwork
    from imgclf.training.frozen import FrozenFront

    built = []
    original = FrozenFront._build

    def build(self, start, size):
        graph = original(self, start, size)
        built.append((size, isinstance(graph, OnnxNetwork)))
        return graph

    monkeypatch.setattr(FrozenFront, "_build", build)
    data = ImageData.from_folder(colours, valid_fraction=0.25, **FAST)
    runs = {}
    for runtime in ("torch", "onnx"):
        config = TrainConfig(epochs=2, freeze_epochs=0, freeze_early=True, seed=3,
                             frozen_runtime=runtime)
        learner = Learner.create(data, config=config, verbose=False,
                                 output=tmp_path / runtime)
        learner.fine_tune()
        assert (learner._front is not None) is (runtime == "onnx")
        # onnxruntime's graphs ran the frozen layers, and let go of at the end
        assert ((64, 64), True) in built if runtime == "onnx" else not built
        assert learner._front is None or not learner._front.graphs
        settings = json.loads((tmp_path / runtime / "settings.json").read_text())
        assert settings["training"]["frozen_runtime"] == runtime
        runs[runtime] = [row["valid_loss"] for row in learner.history]
    assert runs["onnx"] == pytest.approx(runs["torch"], abs=1e-3)


def test_where_onnxruntime_cannot_build_the_front_pytorch_runs_it(colours, monkeypatch,
                                                                  capsys):
    from imgclf.errors import ImgclfError
    from imgclf.training import frozen

    def broken(*args, **kwargs):
        raise ImgclfError("no graph today")

    monkeypatch.setattr(frozen, "frozen_front", broken)
    network, start = _views_network()
    images = torch.randn(2, 3, 64, 64)
    out = frozen.FrozenFront(network, show_progress=False)(images, start)
    with torch.no_grad():
        assert torch.allclose(out, network.features(images, stop=start))
    assert "PyTorch runs the frozen layers" in capsys.readouterr().err


def test_the_time_limit_prices_reused_epochs_as_the_schedule_runs_them():
    """fit_phase prices a schedule of n epochs with n // 2 of them reusing pictures (each
    1 s here against 10 s for one that reads): the epochs it fits, run in the pattern
    ``reuses`` gives, must end within the limit for every limit (a 5-epoch fit priced with
    a 6-epoch schedule's share of reused epochs once ran 2 s over)."""
    from imgclf.training.plan import reuses
    from imgclf.training.plan import Phase, fit_phase

    phase = Phase("all 1", 6, (1e-3,), frozen=False)
    for limit in range(10, 80):
        epochs, said, reuse = fit_phase(
            phase, limit=limit, spent=0.0, into_epoch=0.0, step_seconds=1.0, steps_per_epoch=10,
            kept="probe", front_seconds=1.0, reuse=True, validate_seconds=None,
            pictures={"train": 160, "valid": 0}, batch_size=16)
        cost = sum(0.1 * 10 if reuses(epoch, epochs) else 10.0 for epoch in range(epochs))
        assert epochs and reuse is True and cost <= limit + 1e-9, (limit, epochs, cost)
        assert f"running {epochs} of 6" in said
        assert epochs == 6 or sum(0.1 * 10 if reuses(e, epochs + 1) else 10.0
                                  for e in range(epochs + 1)) > limit  # none left unused
