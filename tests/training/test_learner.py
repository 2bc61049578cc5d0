"""Training on tiny generated pictures: it learns, checkpoints, resumes exactly, and exports."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from imgclf import ImageData, Learner, Predictor, TrainConfig, train
from imgclf.cli import main
from imgclf.inference import loop
from imgclf.training.learner import BEST, CHECKPOINT, FINAL, one_cycle

FAST = dict(image_size=64, batch_size=8, num_workers=0, verbose=False)


def _weights(learner):
    return {k: v.clone() for k, v in learner.network.state_dict().items()}


def test_fine_tune_learns_and_writes_its_files(colours, tmp_path):
    data = ImageData.from_folder(colours, valid_fraction=0.25, **FAST)
    learner = train(data, mode="fine_tune", epochs=2, freeze_epochs=3, learning_rate=2e-3,
                    output=tmp_path / "run", verbose=False)
    assert [row["phase"] for row in learner.history] == ["head"] * 3 + ["all"] * 2
    assert learner.history[-1]["accuracy"] >= 0.8
    for name in (CHECKPOINT, BEST, FINAL, "history.json", "settings.json"):
        assert (tmp_path / "run" / name).is_file(), name
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert settings["training"]["learning_rate"] == 2e-3 and settings["device"] == "cpu"


def test_freezing_trains_only_the_head(colours):
    data = ImageData.from_folder(colours, **FAST)
    learner = Learner.create(data, config=TrainConfig(epochs=0, freeze_epochs=1), verbose=False)
    before = _weights(learner)
    learner.fine_tune()
    after = learner.network.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("head.") for k in changed)


@pytest.mark.parametrize("freeze_early", [True, False])
def test_freeze_early_keeps_the_first_layer_group_as_it_was(colours, freeze_early):
    data = ImageData.from_folder(colours, **FAST)
    learner = Learner.create(data, config=TrainConfig(epochs=1, freeze_epochs=0,
                                                      freeze_early=freeze_early), verbose=False)
    early = {id(p) for p in learner.network.layer_groups()[0]}
    names = {name for name, p in learner.network.named_parameters() if id(p) in early}
    before = _weights(learner)
    learner.fine_tune()
    after = learner.network.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("head.") for k in changed)
    assert any(k.startswith("backbone.") and k not in names for k in changed)
    assert bool(changed & names) is not freeze_early
    assert learner.settings()["training"]["freeze_early"] is freeze_early


def test_freeze_early_is_chosen_for_the_device():
    from imgclf.training.steps import resolved

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolved(TrainConfig(), cpu, has_bf16=False)[0].freeze_early is True
    # fine_tune keeps fastai's recipe: every layer trains
    assert resolved(TrainConfig(mode="fine_tune"), cpu, has_bf16=False)[0].freeze_early is False
    assert resolved(TrainConfig(), cuda, has_bf16=True)[0].freeze_early is False
    assert resolved(TrainConfig(freeze_early=False), cpu, has_bf16=False)[0].freeze_early is False


def test_progressive_resizing_trains_all_but_the_last_epoch_on_smaller_crops(colours):
    from imgclf.training.plan import small_size

    data = ImageData.from_folder(colours, **FAST)
    learner = Learner.create(data, config=TrainConfig(epochs=3, freeze_epochs=1, time_limit=0,
                                                      progressive_resizing=True), verbose=False)
    seen = []
    learner.network.register_forward_pre_hook(
        lambda module, inputs: seen.append(inputs[0].shape[-1]) if module.training else None)
    learner.fine_tune()
    small = small_size(64)
    assert small == 48
    # the head-only epoch and the schedule's last epoch at full size; the others smaller
    assert [row["train_size"] for row in learner.history] == [64, small, small, 64]
    steps_per_epoch = len(data.train_loader())
    # (head-only steps call network.features, not the network: unseen here)
    assert seen == [small] * 2 * steps_per_epoch + [64] * steps_per_epoch
    assert learner.settings()["training"]["progressive_resizing"] is True


def test_the_time_limit_prices_the_full_size_epoch_from_a_smaller_one():
    from imgclf.training.plan import Phase, full_step_seconds, small_epochs

    whole = Phase("all 1", 4, (1e-3,), frozen=False)
    assert small_epochs(whole, True) == 3 and small_epochs(whole, False) == 0
    assert small_epochs(Phase("head", 4, (1e-3,)), True) == 0  # head epochs keep their size
    assert small_epochs(Phase("all", 1, (1e-3,), frozen=False), True) == 0
    # timed on the smaller crops at 1 s a step, half the pixels: a full-size step 2 s
    assert full_step_seconds(1.0, timed_small=True, area_ratio=0.5) == pytest.approx(2.0)
    assert full_step_seconds(2.0, timed_small=False, area_ratio=0.5) == 2.0


@pytest.mark.parametrize("on_cpu", [True, False])
def test_a_device_without_bf16_never_trains_in_it(monkeypatch, on_cpu):
    from imgclf.training import steps

    monkeypatch.setattr(steps, "BF16_ON_CPU", on_cpu)  # whether auto would choose it
    cpu = torch.device("cpu")
    for precision in ("auto", "bfloat16", "float32"):
        config, note = steps.resolved(TrainConfig(precision=precision), cpu, has_bf16=False)
        assert config.precision == "float32"
        assert (note is not None) == (precision == "bfloat16")
    # with bf16 instructions, auto follows the measurement and an explicit choice is kept
    assert steps.resolved(TrainConfig(), cpu, has_bf16=True)[0].precision == (
        "bfloat16" if on_cpu else "float32")
    assert steps.resolved(TrainConfig(precision="bfloat16"), cpu,
                          has_bf16=True)[0].precision == "bfloat16"
    assert steps.resolved(TrainConfig(), torch.device("cuda"), has_bf16=True)[0].precision == (
        "bfloat16")
    # the CPU is asked, never assumed: checks that say no, or are missing, mean no
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: False, raising=False)
    assert not steps.cpu_has_bf16() and not steps.device_has_bf16(cpu)
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.delattr(torch.cpu, name, raising=False)
    assert not steps.cpu_has_bf16()


@pytest.mark.parametrize("has_bf16", [True, False])
def test_training_steps_run_in_the_precision_the_settings_say(colours, monkeypatch, capsys,
                                                              has_bf16):
    from imgclf.training import steps

    monkeypatch.setattr(steps, "device_has_bf16", lambda device: has_bf16)
    data = ImageData.from_folder(colours, **FAST)
    learner = Learner.create(data, config=TrainConfig(epochs=1, freeze_epochs=0,
                                                      precision="bfloat16"))
    seen = []
    learner.network.head.register_forward_hook(
        lambda module, inputs, output: seen.append(torch.is_autocast_enabled("cpu"))
        if module.training else None)
    learner.fine_tune()
    assert seen and set(seen) == {has_bf16}
    assert learner.settings()["training"]["precision"] == ("bfloat16" if has_bf16 else "float32")
    assert ("no bfloat16 arithmetic" in capsys.readouterr().err) is not has_bf16


@pytest.mark.parametrize("workers", [0, 2])
def test_interrupted_training_resumes_to_the_same_weights(colours, tmp_path, workers):
    config = dict(epochs=2, freeze_epochs=1, learning_rate=5e-3, verbose=False)
    data = ImageData.from_folder(colours, **{**FAST, "num_workers": workers})
    whole = train(data, mode="fine_tune", output=tmp_path / "whole", **config)

    class StopAfterSecondEpoch:
        def on_epoch_end(self, learner, row):
            if row["epoch"] == 1:
                raise KeyboardInterrupt  # as if Ctrl-C was pressed right after the checkpoint

    with pytest.raises(KeyboardInterrupt):
        train(data, mode="fine_tune", output=tmp_path / "cut",
              callbacks=[StopAfterSecondEpoch()], **config)
    assert not (tmp_path / "cut" / FINAL).exists()
    resumed = Learner.resume(tmp_path / "cut", data, verbose=False)
    assert len(resumed.history) == 3
    for key, value in whole.network.state_dict().items():  # bit for bit
        assert torch.equal(value, resumed.network.state_dict()[key]), key
    assert (tmp_path / "cut" / FINAL).is_file()


def test_workers_do_not_change_what_training_sees(colours):
    """Augmentation is seeded per picture and epoch, not per worker process."""
    config = dict(mode="fine_tune", epochs=1, freeze_epochs=1, learning_rate=5e-3)
    runs = [train(ImageData.from_folder(colours, **{**FAST, "num_workers": workers}), **config)
            for workers in (0, 2)]
    for key, value in runs[0].network.state_dict().items():
        assert torch.equal(value, runs[1].network.state_dict()[key]), key


def test_resuming_with_other_split_settings_is_refused(colours, tmp_path):
    from imgclf import DataError

    class Stop:
        def on_epoch_end(self, learner, row):
            raise KeyboardInterrupt

    data = ImageData.from_folder(colours, valid_fraction=0.25, **FAST)
    with pytest.raises(KeyboardInterrupt):
        train(data, mode="fine_tune", epochs=1, freeze_epochs=1, output=tmp_path / "run",
              callbacks=[Stop()], verbose=False)
    for other in (dict(seed=7), dict(valid_fraction=0.4)):
        changed = ImageData.from_folder(colours, **{"valid_fraction": 0.25, **FAST, **other})
        with pytest.raises(DataError, match="other settings"):
            Learner.resume(tmp_path / "run", changed, verbose=False)
    # the command line takes the run's own split settings: no flag needed to resume
    assert main(["train", str(colours), "--out", str(tmp_path / "run"), "--resume",
                 "--image-size", "64", "--batch-size", "8"]) == 0


def test_same_seed_same_result(colours):
    data = ImageData.from_folder(colours, **FAST)
    runs = [train(data, mode="fine_tune", epochs=1, freeze_epochs=1, verbose=False).history
            for _ in range(2)]
    for first, second in zip(*runs):
        assert first["train_loss"] == pytest.approx(second["train_loss"], abs=1e-4)
        assert first["valid_loss"] == pytest.approx(second["valid_loss"], abs=1e-4)


def test_lr_find_returns_a_curve_and_restores_the_weights(colours):
    data = ImageData.from_folder(colours, **FAST)
    learner = Learner.create(data, verbose=False)
    before = _weights(learner)
    found = learner.lr_find(steps=30)
    assert 5 <= len(found.learning_rates) <= 30
    assert found.learning_rates == sorted(found.learning_rates)
    assert found.learning_rates[0] <= found.suggestion <= found.learning_rates[-1]
    assert all(torch.equal(before[k], v) for k, v in learner.network.state_dict().items())
    assert found.plot().axes[0].get_xscale() == "log"


def test_one_cycle_warms_up_then_anneals():
    rates = [one_cycle(step, 100, 1.0)[0] for step in range(100)]
    peak = int(np.argmax(rates))
    assert 20 <= peak <= 30 and rates[0] == pytest.approx(1 / 25)
    assert rates[-1] < 1e-3 and rates == sorted(rates[:peak + 1]) + rates[peak + 1:]


def test_cli_train_then_predict(colours, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(colours), "--mode", "fine_tune", "--image-size", "64",
                 "--batch-size", "8", "--epochs", "1", "--no-freeze-early",
                 "--precision", "float32", "--learning-rate", "5e-3", "--out", str(out)]) == 0
    assert (out / FINAL).is_file()
    training = json.loads((out / "settings.json").read_text())["training"]
    assert (training["freeze_early"], training["precision"]) == (False, "float32")
    assert "float32" in capsys.readouterr().err  # the run says how it trains
    capsys.readouterr()
    assert main(["predict", str(out), str(colours / "red"), "--top-k", "2", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 12 and all(len(row["top"]) == 2 for row in rows)
    csv_path = tmp_path / "out.csv"
    assert main(["predict", str(out / FINAL), str(colours / "blue"), "--csv", str(csv_path)]) == 0
    header = csv_path.read_text().splitlines()[0]
    assert header == "path,label,index,probability,unknown,outlier_score,blue,red,error"


@pytest.mark.parametrize("asked, runs", [([], "onnx"), (["--frozen-runtime", "torch"], "torch")])
def test_cli_says_and_saves_what_runs_the_frozen_layers(colours, tmp_path, capsys, asked, runs):
    out = tmp_path / "run"
    assert main(["train", str(colours), "--mode", "fine_tune", "--image-size", "64",
                 "--batch-size", "8", "--epochs", "1", "--freeze-epochs", "0",
                 "--freeze-early", *asked, "--out", str(out)]) == 0
    training = json.loads((out / "settings.json").read_text())["training"]
    assert (training["freeze_early"], training["frozen_runtime"]) == (True, runs)
    assert ("run by onnxruntime" in capsys.readouterr().err) is (runs == "onnx")


def test_cli_resume_without_a_checkpoint_says_so(colours, tmp_path, capsys):
    assert main(["train", str(colours), "--out", str(tmp_path / "none"), "--resume"]) == 1
    assert "Nothing to resume" in capsys.readouterr().err


def test_probe_tests_larger_than_pretrained_and_trains_on_pretrained_crops(colours, tmp_path):
    from imgclf.training.plan import probe_image_size

    assert [probe_image_size(size) for size in (224, 240, 260)] == [288, 320, 352]
    data = ImageData.from_folder(colours, num_workers=0, verbose=False)  # no image_size given
    learner = train(data, mode="probe", output=tmp_path / "run", verbose=False)
    assert (learner.data.input.image_size, learner.data.input.train_size) == (288, 224)
    import contextlib
    import io

    log = io.StringIO()
    with contextlib.redirect_stderr(log):  # what the run says is the size it reads at
        train(data, mode="probe", verbose=True)
    assert "image size 288 (training crops 224)" in " ".join(log.getvalue().split())
    assert learner.data.loader("train").dataset[0][0].shape[-1] == 224
    assert learner.data.loader("valid").dataset[0][0].shape[-1] == 288
    predictor = Predictor.load(tmp_path / "run" / FINAL)
    assert predictor.input == learner.data.input  # the sizes travel in the model file
    # a size the user chose is kept as it is
    sized = ImageData.from_folder(colours, image_size=64, num_workers=0, verbose=False)
    assert train(sized, mode="probe", verbose=False).data.input.image_size == 64


def test_an_interrupted_auto_run_resumes_at_its_own_sizes(make_photo, tmp_path):
    for label, tint in (("red", (180, 20, 20)), ("blue", (20, 20, 180))):
        for index in range(26):  # enough for auto to fine-tune after the probe
            make_photo(f"many/{label}/{index}.jpg", size=(40, 40), tint=tint, noise=70)
    data = ImageData.from_folder(tmp_path / "many", batch_size=16, num_workers=0, verbose=False)

    class StopAfterFirstEpoch:
        def on_epoch_end(self, learner, row):
            if row["phase"] == "all 1":
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # patience 0: the probe is right on every tint,
        train(data, epochs=2, output=tmp_path / "run",  # which would end an auto run there
              callbacks=[StopAfterFirstEpoch()], verbose=False, patience=0)
    resumed = Learner.resume(tmp_path / "run", data, verbose=False)
    assert (resumed.data.input.image_size, resumed.data.input.train_size) == (288, 224)
    assert [row["phase"] for row in resumed.history] == ["probe", "all 1", "all 1"]


@pytest.mark.parametrize("mode", ["probe", "fine_tune"])
def test_every_mode_saves_settings_calls_back_and_checkpoints_alike(mode, colours, tmp_path):
    class Recorder:
        def __init__(self):
            self.hooks = []

        def on_train_start(self, learner, plan):
            self.hooks.append(("start", [phase.name for phase in plan]))

        def on_epoch_end(self, learner, row):
            self.hooks.append(("epoch", row["phase"]))

        def on_train_end(self, learner):
            self.hooks.append(("end", None))

    recorder = Recorder()
    data = ImageData.from_folder(colours, **FAST)
    train(data, mode=mode, epochs=1, freeze_epochs=1, output=tmp_path / "run",
          callbacks=[recorder], verbose=False)
    phases = ["probe"] if mode == "probe" else ["head", "all"]
    assert recorder.hooks == [("start", phases), *(("epoch", p) for p in phases), ("end", None)]
    for name in (CHECKPOINT, BEST, FINAL, "history.json", "settings.json"):
        assert (tmp_path / "run" / name).is_file(), name
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert settings["training"]["mode"] == mode and settings["input"]["image_size"] == 64
    assert [phase["name"] for phase in settings["plan"]] == phases


@pytest.mark.parametrize("patience, phases", [
    (0, ["probe", "all 1"]),
    (1, ["probe"]),  # the probe is right on every colour: kept, as without the interruption
])
def test_a_probe_run_resumes_past_its_probe(colours, tmp_path, monkeypatch, patience, phases):
    monkeypatch.setattr("imgclf.training.plan.AUTO_PROBE_BELOW", 5)
    data = ImageData.from_folder(colours, **FAST)

    class StopAfterProbe:
        def on_epoch_end(self, learner, row):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(data, epochs=1, output=tmp_path / "run", callbacks=[StopAfterProbe()],
              verbose=False, patience=patience)
    resumed = Learner.resume(tmp_path / "run", data, verbose=False)
    assert [row["phase"] for row in resumed.history] == phases
    assert (tmp_path / "run" / FINAL).is_file() and resumed.unknown is not None
    # resuming a finished run says so (its best.imgclf now holds a detector too)
    again = Learner.resume(tmp_path / "run", data, verbose=False)
    assert len(again.history) == len(phases) and again.unknown is not None


# validation losses of the probe (epoch 0) and of four whole-network epochs in two cycles
# of two (epochs 1-2, 3-4); 1 and 3 end at a high learning rate
@pytest.mark.parametrize("losses, epochs_run, kept", [
    # the first cycle's warm-up epoch looks better, its annealed end is worse than the probe:
    # stop there, keeping the probe's weights
    ((0.10, 0.01, 0.20, 0.01, 0.01), 3, 0),
    # its warm-up epoch is worse than the probe, its annealed end better: the fine-tuned
    # weights are kept (the second cycle's warm-up looked better still, its end worse)
    ((0.10, 0.30, 0.05, 0.01, 0.07), 5, 2),
    # each cycle ends better than the last: all run, the last is kept
    ((0.10, 0.30, 0.05, 0.30, 0.04), 5, 4),
])
def test_auto_mode_judges_fine_tuning_only_where_its_schedule_has_annealed(
        make_photo, tmp_path, monkeypatch, losses, epochs_run, kept, capsys):
    monkeypatch.setattr("imgclf.training.plan.AUTO_CYCLE_EPOCHS", 2)
    for label, tint in (("red", (180, 20, 20)), ("blue", (20, 20, 180))):
        for index in range(22):  # auto fine-tunes from 20 training pictures a class
            make_photo(f"data/{label}/{index}.jpg", size=(40, 40), tint=tint, noise=70)
    data = ImageData.from_folder(tmp_path / "data", image_size=32, batch_size=16,
                                 valid_fraction=0.1, num_workers=0, verbose=False)
    monkeypatch.setattr(Learner, "validate", lambda self: {  # one scripted loss per epoch
        "valid_loss": losses[min(len(self.history), 4)], "accuracy": 0.5, "error_rate": 0.5})
    weights = {}

    class Weights:
        def on_epoch_end(self, learner, row):
            weights[row["epoch"]] = _weights(learner)

    learner = train(data, mode="auto", epochs=4, output=tmp_path / "run", verbose=True,
                    time_limit=0, callbacks=[Weights()])
    assert [row["phase"] for row in learner.history] == [
        "probe", "all 1", "all 1", "all 2", "all 2"][:epochs_run]
    assert [row["annealed"] for row in learner.history] == [
        True, False, True, False, True][:epochs_run]
    assert learner.best["epoch"] == kept
    final = learner.network.state_dict()
    assert all(torch.equal(final[k], v) for k, v in weights[kept].items())
    said = capsys.readouterr().err
    assert ("Stopping:" in said) == (epochs_run < 5)
    assert f"Kept the {learner.history[kept]['phase']} epoch ({kept})" in said
    again = Learner.resume(tmp_path / "run", data, verbose=False)  # a finished run
    assert len(again.history) == epochs_run
    passes = []
    run = loop.run
    monkeypatch.setattr(loop, "run", lambda *args, **options: passes.append(1) or run(
        *args, **options))
    learner.evaluate()
    # the probe's weights kept: its head runs on the cached embeddings; fine-tuned ones
    # go through the network
    assert bool(passes) == (kept != 0)
    passes.clear()
    again.evaluate()  # the finished run read again knows which weights it kept
    assert bool(passes) == (kept != 0)


@pytest.mark.parametrize("accuracy, pictures, patience, kept", [
    (0.9739, 153, 1, True),  # hymenoptera's probe: 4 wrong
    (0.964, 250, 1, True),  # 9 wrong
    (0.96, 250, 1, False),  # 10 wrong
    (0.95, 20, 1, True),  # 1 wrong, 95% right
    (0.95, 200, 1, False),  # 95% right, but 10 wrong
    (0.9444, 18, 1, False),  # 1 wrong, under 95% right
    (1.0, 60, 1, True),  # none wrong
    (0.9062, 480, 1, False),  # blood-cells': 45 wrong
    (0.96, 300, 1, False),  # 12 wrong: enough for validation to show a gain
    (0.90, 40, 1, False),  # 4 wrong, but 10% of a small validation set
    (0.9739, 153, 0, False),  # patience 0: every phase runs
    (float("nan"), 0, 1, False),  # no validation pictures
])
def test_auto_keeps_a_probe_that_leaves_too_little_to_gain(accuracy, pictures, patience,
                                                           kept):
    from imgclf.training.steps import probe_is_right
    row = {"accuracy": accuracy, "error_rate": 1 - accuracy}
    why = probe_is_right(TrainConfig(patience=patience), row, pictures)
    assert (why is not None) == kept
    if kept and pictures == 153:
        assert "149 of 153 validation pictures right (0.9739), leaving only 4 to put right" in why
    if kept and accuracy == 1.0:
        assert "60 of 60 validation pictures right (1.0000), leaving none to put right" in why


def test_an_auto_run_whose_probe_is_right_runs_no_whole_network_epoch(make_photo, tmp_path,
                                                                      capsys):
    for label, tint in (("red", (180, 20, 20)), ("blue", (20, 20, 180))):
        for index in range(26):  # enough for auto to plan whole-network epochs
            make_photo(f"many/{label}/{index}.jpg", size=(40, 40), tint=tint, noise=70)
    data = ImageData.from_folder(tmp_path / "many", batch_size=16, num_workers=0, verbose=False)
    learner = train(data, epochs=2, output=tmp_path / "run", verbose=True)
    said = capsys.readouterr().err
    assert [row["phase"] for row in learner.history] == ["probe"]
    assert learner.history[0]["accuracy"] == 1.0
    assert "Keeping the probe: it gets 10 of 10 validation pictures right" in said
    assert "leaving none to put right" in said
    assert "Kept the probe epoch (0)" in said
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert [phase["name"] for phase in settings["plan"]] == ["probe", "all 1"]
    again = Learner.resume(tmp_path / "run", data, verbose=False)  # a finished run
    assert [row["phase"] for row in again.history] == ["probe"]


@pytest.mark.parametrize("epochs, cycles", [(1, [1]), (4, [4]), (5, [5]), (8, [4, 4]),
                                            (11, [4, 7]), (None, [6])])
def test_auto_mode_runs_its_epochs_in_cycles_of_four_the_rest_joining_the_last(
        colours, epochs, cycles, monkeypatch):
    from imgclf.training.plan import plan_for

    monkeypatch.setattr("imgclf.training.plan.AUTO_PROBE_BELOW", 5)
    data = ImageData.from_folder(colours, **FAST)
    plan = plan_for(TrainConfig(epochs=epochs), data)
    assert [phase.kind for phase in plan] == ["probe"] + ["one_cycle"] * len(cycles)
    assert [phase.epochs for phase in plan[1:]] == cycles
    assert all(phase.compare_at_end and not phase.frozen for phase in plan[1:])
    assert not any(phase.compare_at_end for phase in plan_for(TrainConfig(mode="fine_tune"),
                                                              data))


def test_epochs_default_to_six_in_auto_and_fastais_four_in_fine_tune(colours, monkeypatch):
    from imgclf.training.plan import plan_for

    monkeypatch.setattr("imgclf.training.plan.AUTO_PROBE_BELOW", 5)
    data = ImageData.from_folder(colours, **FAST)
    assert [(phase.name, phase.epochs) for phase in plan_for(TrainConfig(), data)] == [
        ("probe", 1), ("all 1", 6)]
    assert [(phase.name, phase.epochs) for phase in plan_for(
        TrainConfig(mode="fine_tune"), data)] == [("head", 2), ("all", 4)]
    assert plan_for(TrainConfig(mode="fine_tune", epochs=3), data)[-1].epochs == 3
    learner = Learner.create(data, verbose=False)  # auto's settings, fastai's fine_tune()
    planned = []
    monkeypatch.setattr(Learner, "fit", lambda self, plan, **_: planned.append(plan) or self)
    learner.fine_tune()
    assert [(phase.name, phase.epochs) for phase in planned[0]] == [("head", 2), ("all", 4)]
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=-1)
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0, freeze_epochs=0)


def test_epochs_that_fit_a_time_limit():
    from imgclf.training.plan import (FORWARD_SHARE, Phase, describe_seconds, epoch_costs,
                                      fit_epochs, fit_to_time)

    # 100 s spent, epochs of 50 s, 10 s into the first: it ends at 140 s
    assert fit_epochs(4, limit=1000, spent=100, epoch_seconds=50, into_epoch=10) == 4
    assert fit_epochs(4, limit=240, spent=100, epoch_seconds=50, into_epoch=10) == 3
    assert fit_epochs(4, limit=189, spent=100, epoch_seconds=50, into_epoch=10) == 1
    assert fit_epochs(4, limit=139, spent=100, epoch_seconds=50, into_epoch=10) == 0
    # an epoch: its steps and a validation pass, timed or (before one ran) estimated; the end
    # of a run whose backbone trained: the detector's pass over the training pictures
    pictures = {"train": 400, "valid": 100}
    whole, head = Phase("all", 4, (1e-3,), frozen=False), Phase("head", 2, (1e-2,))
    assert epoch_costs(whole, step_seconds=0.5, steps_per_epoch=25, validate_seconds=8.0,
                       pictures=pictures, batch_size=16) == (20.5, 32.0)
    assert epoch_costs(head, step_seconds=0.5, steps_per_epoch=25, validate_seconds=8.0,
                       pictures=pictures, batch_size=16) == (20.5, 0.0)
    estimated = 0.5 * FORWARD_SHARE * 100 / 16
    assert epoch_costs(whole, step_seconds=0.5, steps_per_epoch=25, validate_seconds=None,
                       pictures=pictures, batch_size=16) == (12.5 + estimated, 4 * estimated)
    # time kept for the end (the detector's pass once the backbone trained) is not planned on
    phase = Phase("all 1", 4, (1e-3,), frozen=False)
    epochs, said = fit_to_time(phase, limit=300, spent=100, epoch_seconds=50, into_epoch=10,
                               kept="probe", finishing=60)
    assert epochs == 3 and "1 min kept for the end" in said and "running 3 of 4" in said
    epochs, said = fit_to_time(phase, limit=180, spent=100, epoch_seconds=50, into_epoch=10,
                               kept="probe", finishing=60)
    assert epochs == 0 and "keeping the probe epoch" in said and "--time-limit 7m" in said
    assert [describe_seconds(s) for s in (45, 200, 3900)] == ["45 s", "3 min 20 s", "1 h 5 min"]


@pytest.mark.parametrize("room, epochs_run", [
    (None, 4),  # no limit: every epoch (two cycles of 2)
    # the probe's time plus 9 s: one whole-network epoch of 6 s (with 3 s to spare for a busy
    # machine's checkpoints and set-up), its cycle shortened to a complete 1-epoch schedule;
    # then the second cycle does not fit
    (9.0, 1),
    (0.0, 0),  # no time left after the probe: it is kept, unchanged
])


def test_auto_mode_fits_its_epochs_to_the_time_limit(timed_auto, tmp_path, monkeypatch, capsys,
                                                      room, epochs_run):
    monkeypatch.setattr("imgclf.training.plan.AUTO_CYCLE_EPOCHS", 2)
    data, probe = timed_auto.data, timed_auto.probe
    if room is not None:  # the limit: what the probe took, plus room
        timed_auto.room(room)
    learner = train(data, mode="auto", epochs=4, output=tmp_path / "run", verbose=True,
                    time_limit=0 if room is None else 1e9, callbacks=[timed_auto.after_probe])
    said = capsys.readouterr().err
    assert len(learner.history) == 1 + epochs_run
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert settings["plan"][1]["epochs"] == (1 if epochs_run == 1 else 2)
    if room is None:
        assert "Time limit" not in said
    elif epochs_run:
        assert "running 1 of 2." in said and "keeping the all 1 epoch" in said
        assert learner.history[-1]["annealed"]  # the shortened schedule still anneals
    else:
        assert "does not fit; keeping the probe epoch" in said
        assert torch.equal(learner.network.head.linear.weight, probe["head"])
    again = Learner.resume(tmp_path / "run", data, verbose=False)  # a finished run
    assert len(again.history) == 1 + epochs_run


def test_a_weights_file_trains_the_backbone_it_holds(colours, tmp_path, private_cache, capsys):
    from safetensors.torch import save_file

    from imgclf import DataError
    from imgclf.backbones import create_backbone
    from imgclf.training.embeddings import embedding_folder

    random = create_backbone("efficientnet_lite0", pretrained=False, imagenet_head=True)
    save_file({k: v.contiguous() for k, v in random.state_dict().items()},
              tmp_path / "random.safetensors")
    data = ImageData.from_folder(colours, image_size=64, num_workers=0, verbose=False)
    learner = train(data, weights=tmp_path / "random.safetensors", mode="probe",
                    output=tmp_path / "run", verbose=False)
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert settings["weights"] == str((tmp_path / "random.safetensors").resolve())
    # its embeddings are cached apart from the ImageNet weights' ones
    assert embedding_folder(learner.data) != embedding_folder(data)
    stem = random.conv_stem.weight
    assert torch.equal(learner.network.backbone.conv_stem.weight.cpu(), stem)
    assert main(["train", str(colours), "--mode", "probe", "--image-size", "64",
                 "--weights", str(tmp_path / "random.safetensors"),
                 "--out", str(tmp_path / "cli")]) == 0
    assert json.loads((tmp_path / "cli" / "settings.json").read_text())["weights"]
    with pytest.raises(DataError, match="Weights file not found"):
        train(data, weights=tmp_path / "missing.safetensors", mode="probe", verbose=False)


def test_every_long_phase_shows_a_bar_and_logs_get_no_blank_lines(colours, monkeypatch, capsys):
    import io

    from rich.console import Console

    import imgclf._progress

    data = ImageData.from_folder(colours, image_size=32, batch_size=8, num_workers=0,
                                 verbose=False)
    terminal = io.StringIO()
    monkeypatch.setattr(imgclf._progress, "console", lambda: Console(
        file=terminal, force_terminal=True, width=160))
    learner = Learner.create(data)
    learner.lr_find(steps=6)
    train(data, mode="probe")
    train(data, mode="fine_tune", epochs=1, freeze_epochs=0)
    shown = terminal.getvalue()
    for phase in ("Finding a learning rate", "Embedding train pictures",
                  "Fitting the head", "all 1/1", "Validating"):
        assert phase in shown, phase
    assert "eta" in shown
    monkeypatch.undo()  # a log: stderr is no terminal
    capsys.readouterr()
    train(data, mode="fine_tune", epochs=1, freeze_epochs=1)
    log = capsys.readouterr().err
    assert "epoch" in log and "\n\n" not in log


def test_auto_backbone_trains_the_candidate_with_the_lowest_cross_validated_loss(colours,
                                                                              tmp_path):
    data = ImageData.from_folder(colours, **FAST)
    learner = train(data, backbone="auto", mode="probe", output=tmp_path / "run",
                    verbose=False)
    rows = learner.backbone_choice
    assert [row["backbone"] for row in rows] == ["efficientnet_lite0", "efficientnet_lite1",
                                                 "efficientnet_lite2"]
    best = min(rows, key=lambda row: row["cv_loss"])
    assert [row.get("chosen", False) for row in rows] == [row is best for row in rows]
    assert learner.data.backbone == best["backbone"]
    assert learner.info().backbone == best["backbone"]
    # the chosen one's probe phase fits the same head on the embeddings its choice cached
    assert learner.history[0]["cv_loss"] == pytest.approx(best["cv_loss"])
    assert learner.history[0]["computed"] == 0
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert settings["backbone"] == best["backbone"] and settings["backbone_choice"] == rows


def test_auto_backbone_probes_larger_candidates_only_while_the_time_limit_allows(colours,
                                                                                 capsys):
    from imgclf.training.modes import choose_backbone

    data = ImageData.from_folder(colours, **FAST)
    chosen, rows = choose_backbone(data, TrainConfig(mode="probe", time_limit=0.01),
                                   verbose=True)
    assert [row["backbone"] for row in rows] == ["efficientnet_lite0"]
    assert chosen.backbone == "efficientnet_lite0"
    assert "efficientnet_lite1: not probed" in capsys.readouterr().err
    chosen, rows = choose_backbone(data, TrainConfig(mode="probe", time_limit=0),
                                   candidates=["efficientnet_lite1", "efficientnet_lite0"],
                                   verbose=False)
    assert [row["backbone"] for row in rows] == ["efficientnet_lite1", "efficientnet_lite0"]


def test_auto_backbone_refuses_a_weights_file(colours, tmp_path):
    from imgclf.errors import BackboneError

    data = ImageData.from_folder(colours, **FAST)
    with pytest.raises(BackboneError, match="name it"):
        train(data, backbone="auto", weights=tmp_path / "w.safetensors", verbose=False)


def test_a_run_that_chose_its_backbone_resumes_on_it(colours, tmp_path, monkeypatch):
    from imgclf import load

    # one candidate, not the data's own: the resumed run must find it in the checkpoint
    monkeypatch.setattr("imgclf.training.modes.offline_backbones", lambda: ["efficientnet_lite1"])
    data = ImageData.from_folder(colours, **FAST)
    assert data.backbone == "efficientnet_lite0"

    class StopAfterFirstEpoch:
        def on_epoch_end(self, learner, row):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(data, backbone="auto", mode="fine_tune", epochs=1, freeze_epochs=1,
              output=tmp_path / "run", callbacks=[StopAfterFirstEpoch()], verbose=False)
    learner = Learner.resume(tmp_path / "run", data, verbose=False)
    assert learner.data.backbone == "efficientnet_lite1"
    assert [row["phase"] for row in learner.history] == ["head", "all"]
    assert [row["backbone"] for row in learner.backbone_choice] == ["efficientnet_lite1"]
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert settings["backbone_choice"] == learner.backbone_choice
    assert load(tmp_path / "run" / FINAL).info.backbone == "efficientnet_lite1"


def test_auto_backbone_refuses_to_run_in_several_processes(colours, monkeypatch):
    from imgclf.errors import ImgclfError
    from imgclf.training.modes import choose_backbone

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ImgclfError, match="one process"):
        choose_backbone(ImageData.from_folder(colours, **FAST), TrainConfig(), verbose=False)
