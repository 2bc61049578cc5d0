"""Training in two processes (torchrun, gloo on the CPU): the run finishes, only the first
process writes, a cut run resumes, and the result matches one process's."""

from __future__ import annotations

import json

import pytest

from imgclf import ImageData, train
from imgclf.cli import main
from imgclf.training.learner import BEST, CHECKPOINT, FINAL, HISTORY, SETTINGS
from tests.conftest import shared_dataset

pytestmark = pytest.mark.integration

WRITTEN = sorted([BEST, CHECKPOINT, FINAL, HISTORY, SETTINGS])


def final_accuracy(folder) -> float:
    return json.loads((folder / HISTORY).read_text())[-1]["accuracy"]


def test_two_processes_train_hymenoptera_like_one(tmp_path, capsys):
    data = shared_dataset("hymenoptera")
    recipe = ["--mode", "fine_tune", "--epochs", "1", "--freeze-epochs", "1",
              "--image-size", "160"]
    assert main(["train", str(data), *recipe, "--out", str(tmp_path / "two"),
                 "--devices", "2"]) == 0
    assert main(["train", str(data), *recipe, "--out", str(tmp_path / "one")]) == 0
    two, one = final_accuracy(tmp_path / "two"), final_accuracy(tmp_path / "one")
    assert abs(two - one) <= 0.01, (two, one)
    assert two > 0.85, (two, one)
    # one model, written once: the second process wrote nothing, anywhere
    listing = {name: sorted(p.name for p in (tmp_path / name).iterdir()) for name in ("one", "two")}
    assert listing["two"] == listing["one"] and set(WRITTEN) <= set(listing["two"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]
    history = json.loads((tmp_path / "two" / HISTORY).read_text())
    assert [row["phase"] for row in history] == ["head", "all"]


def test_a_cut_run_resumes_in_two_processes(colours, tmp_path):
    class StopAfterFirstEpoch:
        def on_epoch_end(self, learner, row):
            if row["epoch"] == 0:
                raise KeyboardInterrupt  # as if Ctrl-C was pressed after the checkpoint

    data = ImageData.from_folder(colours, image_size=64, batch_size=8, num_workers=0,
                                 verbose=False)
    with pytest.raises(KeyboardInterrupt):
        train(data, mode="fine_tune", epochs=1, freeze_epochs=1, output=tmp_path / "run",
              callbacks=[StopAfterFirstEpoch()], verbose=False)
    assert not (tmp_path / "run" / FINAL).exists()
    assert main(["train", str(colours), "--out", str(tmp_path / "run"), "--resume",
                 "--image-size", "64", "--batch-size", "8", "--devices", "2"]) == 0
    history = json.loads((tmp_path / "run" / HISTORY).read_text())
    assert [row["phase"] for row in history] == ["head", "all"]
    assert (tmp_path / "run" / FINAL).is_file()


def test_devices_must_be_a_count(colours, capsys):
    assert main(["train", str(colours), "--devices", "0"]) == 1
    assert "--devices must be 1 or more" in capsys.readouterr().err
