"""Training on tiny generated pictures: it learns, checkpoints, resumes exactly, and exports."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from imgclf import ImageData, Learner, Predictor, TrainConfig, train
from imgclf.cli import main
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
                 "--batch-size", "8", "--epochs", "1",
                 "--learning-rate", "5e-3", "--out", str(out)]) == 0
    assert (out / FINAL).is_file()
    capsys.readouterr()
    assert main(["predict", str(out), str(colours / "red"), "--top-k", "2", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 12 and all(len(row["top"]) == 2 for row in rows)
    csv_path = tmp_path / "out.csv"
    assert main(["predict", str(out / FINAL), str(colours / "blue"), "--csv", str(csv_path)]) == 0
    header = csv_path.read_text().splitlines()[0]
    assert header == "path,label,index,probability,unknown,outlier_score,blue,red,error"


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
            if row["phase"] == "all":
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(data, epochs=2, output=tmp_path / "run", callbacks=[StopAfterFirstEpoch()],
              verbose=False)
    resumed = Learner.resume(tmp_path / "run", data, verbose=False)
    assert (resumed.data.input.image_size, resumed.data.input.train_size) == (288, 224)
    assert [row["phase"] for row in resumed.history] == ["probe", "all", "all"]


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


def test_a_probe_run_resumes_past_its_probe(colours, tmp_path, monkeypatch):
    monkeypatch.setattr("imgclf.training.plan.AUTO_PROBE_BELOW", 5)
    data = ImageData.from_folder(colours, **FAST)

    class StopAfterProbe:
        def on_epoch_end(self, learner, row):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(data, epochs=1, output=tmp_path / "run", callbacks=[StopAfterProbe()],
              verbose=False)
    resumed = Learner.resume(tmp_path / "run", data, verbose=False)
    assert [row["phase"] for row in resumed.history] == ["probe", "all"]
    assert (tmp_path / "run" / FINAL).is_file()
    # resuming a finished run says so (its best.imgclf now holds a detector too)
    again = Learner.resume(tmp_path / "run", data, verbose=False)
    assert len(again.history) == 2 and again.unknown is not None


@pytest.mark.parametrize("losses, epochs_run", [
    ((0.10, 0.20, 0.30, 0.40), 2),  # the first whole-network epoch loses to the probe: stop
    ((0.10, 0.05, 0.20, 0.30), 3),  # one epoch helps, the next does not: stop there
    ((0.10, 0.09, 0.08, 0.07), 4),  # every epoch helps: all of them run
])


def test_auto_mode_stops_when_fine_tuning_does_not_help(make_photo, tmp_path, monkeypatch,
                                                        losses, epochs_run, capsys):
    for label, tint in (("red", (180, 20, 20)), ("blue", (20, 20, 180))):
        for index in range(22):  # auto fine-tunes from 20 training pictures a class
            make_photo(f"data/{label}/{index}.jpg", size=(40, 40), tint=tint, noise=70)
    data = ImageData.from_folder(tmp_path / "data", image_size=32, batch_size=16,
                                 valid_fraction=0.1, num_workers=0, verbose=False)
    monkeypatch.setattr(Learner, "validate", lambda self: {  # one scripted loss per epoch
        "valid_loss": losses[min(len(self.history), 3)], "accuracy": 1.0, "error_rate": 0.0})
    learner = train(data, mode="auto", epochs=3, output=tmp_path / "run", verbose=True)
    assert len(learner.history) == epochs_run
    best = min(range(epochs_run), key=lambda epoch: losses[epoch])
    assert learner.best["epoch"] == best
    stopped = "Stopping early" in capsys.readouterr().err
    assert stopped == (epochs_run < 4)
    again = Learner.resume(tmp_path / "run", data, verbose=False)  # a finished run
    assert len(again.history) == epochs_run


def test_epochs_that_fit_a_time_limit():
    from imgclf.training.plan import describe_seconds, fit_epochs

    # 100 s spent, epochs of 50 s, 10 s into the first: it ends at 140 s
    assert fit_epochs(4, limit=1000, spent=100, epoch_seconds=50, into_epoch=10) == 4
    assert fit_epochs(4, limit=240, spent=100, epoch_seconds=50, into_epoch=10) == 3
    assert fit_epochs(4, limit=189, spent=100, epoch_seconds=50, into_epoch=10) == 1
    assert fit_epochs(4, limit=139, spent=100, epoch_seconds=50, into_epoch=10) == 0
    assert [describe_seconds(s) for s in (45, 200, 3900)] == ["45 s", "3 min 20 s", "1 h 5 min"]


@pytest.mark.parametrize("room, epochs_run", [
    (None, 3),  # no limit: every epoch
    (15.0, 2),  # the probe's time plus 15 s: two whole-network epochs of 6 s, not three
    (0.0, 0),  # no time left after the probe: it is kept, unchanged
])


def test_auto_mode_fits_its_epochs_to_the_time_limit(make_photo, tmp_path, monkeypatch, capsys,
                                                      room, epochs_run):
    import time

    import imgclf.training.learner

    for label, tint in (("red", (180, 20, 20)), ("blue", (20, 20, 180))):
        for index in range(22):
            make_photo(f"data/{label}/{index}.jpg", size=(40, 40), tint=tint, noise=70)
    data = ImageData.from_folder(tmp_path / "data", image_size=32, batch_size=8,
                                 valid_fraction=0.1, num_workers=0, verbose=False)
    monkeypatch.setattr(Learner, "validate", lambda self: {  # every epoch helps
        "valid_loss": 1.0 / (1 + len(self.history)), "accuracy": 1.0, "error_rate": 0.0})
    real_step = Learner.train_step

    def slow_step(self, *arguments):  # 1.2 s a batch, 5 batches an epoch: 6 s (with 3 s
        time.sleep(1.2)                 # to spare for a busy machine's checkpoints and set-up)
        return real_step(self, *arguments)

    monkeypatch.setattr(Learner, "train_step", slow_step)
    probe = {}

    class AfterProbe:
        def on_epoch_end(self, learner, row):
            if row["phase"] == "probe":
                probe["spent"] = time.perf_counter() - learner._started
                probe["head"] = learner.network.head.linear.weight.detach().clone()

    if room is not None:  # the limit: what the probe took, plus room
        monkeypatch.setattr(imgclf.training.learner, "time_limit",
                            lambda config, device: probe.get("spent", 0.0) + room)
    learner = train(data, mode="auto", epochs=3, output=tmp_path / "run", verbose=True,
                    time_limit=0 if room is None else 1e9, callbacks=[AfterProbe()])
    said = capsys.readouterr().err
    assert len(learner.history) == 1 + epochs_run
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert settings["plan"][-1]["epochs"] == (epochs_run or 3)
    if room is None:
        assert "Time limit" not in said
    elif epochs_run:
        assert f"running {epochs_run} of 3" in said
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
