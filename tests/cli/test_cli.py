"""The command line: real commands, real exit codes and messages."""

from __future__ import annotations

import json
import re

from imgclf import ImageData, evaluate, load
from imgclf.cli import main


def test_backbones_json_lists_offline_choices(capsys):
    assert main(["backbones", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    offline = {row["name"] for row in rows if row["offline"]}
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"} <= offline


def test_imagenet_classifies_a_folder_and_skips_bad_files(tmp_path, make_picture, capsys):
    for index in range(3):
        make_picture(f"photo{index}.jpg", color=(40 * index, 120, 200))
    (tmp_path / "broken.jpg").write_bytes(b"")
    assert main(["imagenet", str(tmp_path), "--top-k", "2", "--json"]) == 0
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert sorted(line["path"].rsplit("/", 1)[1] for line in lines) == [
        "photo0.jpg", "photo1.jpg", "photo2.jpg"]
    for line in lines:
        assert len(line["top"]) == 2
        assert line["top"][0]["probability"] >= line["top"][1]["probability"]
    assert "broken.jpg: empty file (0 bytes)" in captured.err


def test_wrong_path_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    assert main(["imagenet", str(tmp_path / "missing")]) == 1
    assert "No such file or folder" in capsys.readouterr().err


def test_empty_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["imagenet", str(tmp_path)]) == 1
    assert "No image files in folder" in capsys.readouterr().err


def test_lr_find_plots_and_suggests_a_rate(colours, tmp_path, capsys):
    assert main(["lr-find", str(colours), "--image-size", "32", "--steps", "12",
                 "--out", str(tmp_path / "lr.png")]) == 0
    said = capsys.readouterr().out
    assert "Suggested learning rate" in said and "--head-learning-rate" in said
    assert (tmp_path / "lr.png").read_bytes()[:4] == b"\x89PNG"


def test_csv_columns_and_augmentation_are_flags(colours, tmp_path, capsys):
    import csv

    rows = [(str(path), path.parent.name, "valid" if index % 4 == 0 else "train")
            for index, path in enumerate(sorted(colours.glob("*/*.jpg")))]
    with open(tmp_path / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "colour", "part"])
        writer.writerows(rows)
    assert main(["train", str(tmp_path / "labels.csv"), "--path-column", "file",
                 "--label-column", "colour", "--split-column", "part", "--mode", "probe",
                 "--image-size", "32", "--no-flip", "--rotate", "0", "--augment-policy",
                 "trivialaugment", "--out", str(tmp_path / "run")]) == 0
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert settings["classes"] == ["blue", "red"]
    assert settings["augment"]["flip"] is False and settings["augment"]["rotate"] == 0
    assert settings["augment"]["policy"] == "trivialaugment"
    from imgclf import load

    counts = load(tmp_path / "run" / "model.imgclf", runtime="torch").info.counts
    # the split column decided the split: every fourth picture validates
    assert sum(row["valid"] for row in counts.values()) == 6
    assert main(["train", str(tmp_path / "labels.csv"), "--mode", "probe",
                 "--out", str(tmp_path / "bad")]) == 1  # its columns are not path/label
    assert "path" in capsys.readouterr().err


def test_pictures_in_a_flat_folder_point_to_label_pattern(tmp_path, make_photo, capsys):
    for index in range(4):
        make_photo(f"flat/great_pyrenees_{index}.jpg")
        make_photo(f"flat/pug_{index}.jpg")
    assert main(["data", str(tmp_path / "flat")]) == 1
    assert "--label-pattern" in capsys.readouterr().err
    assert main(["data", str(tmp_path / "flat"), "--label-pattern",
                 r"^(.+)_\d+\.\w+$"]) == 0


def test_time_limits_read_as_people_write_them():
    import argparse

    import pytest

    from imgclf.cli import duration

    assert [duration(text) for text in ("90", "90s", "10m", "1.5h", "0")] == [
        90, 90, 600, 5400, 0]
    for bad in ("nan", "-5m", "ten minutes", "inf"):
        with pytest.raises(argparse.ArgumentTypeError):
            duration(bad)


def test_cache_says_what_it_holds_and_clears_a_kind(colours, private_cache, capsys):
    # after a probe, every kind holds files; clearing views deletes only them, and the next
    # reader of the data makes them again; folders of others under the cache stay
    (private_cache / "venvs" / "kept").mkdir(parents=True)
    (private_cache / "images").mkdir()
    (private_cache / "images" / "mine.jpg").write_bytes(b"not imgclf's")
    assert main(["train", str(colours), "--mode", "probe", "--image-size", "64", "--device",
                 "cpu", "--out", str(colours.parent / "model")]) == 0
    capsys.readouterr()
    assert main(["cache"]) == 0
    listing = capsys.readouterr().out
    files = {kind: int(re.search(rf"^  {kind}\s+(\d+) files", listing, re.M).group(1))
             for kind in ("copies", "views", "embeddings", "runtimes", "verdicts")}
    assert all(files.values()) and files["views"] == 24, listing  # one view a photo
    assert main(["cache", "--clear", "views"]) == 0
    assert "cleared views: 24 files" in capsys.readouterr().out
    assert not (private_cache / "views").exists() and (private_cache / "images").is_dir()
    assert (private_cache / "venvs" / "kept").is_dir()
    data = ImageData.from_folder(colours, image_size=64, num_workers=0, verbose=False)
    assert len(list((private_cache / "views").rglob("*.npy"))) == 0  # verdicts were cached
    evaluate(load(colours.parent / "model" / "model.imgclf"), data, show_progress=False)
    assert len(list((private_cache / "views").rglob("*.npy"))) == len(data.valid)  # again
    assert main(["cache", "--clear", "nope"]) == 1
    assert "the kinds are copies, views" in capsys.readouterr().err
    assert main(["cache", "--clear"]) == 0
    # what remains: the user's folders and file, and the marker that says the cache is imgclf's
    assert sorted(p.name for p in private_cache.iterdir()) == [".imgclf-cache", "images", "venvs"]
    assert [p.name for p in (private_cache / "images").rglob("*")] == ["mine.jpg"]
    assert main(["cache", "--clear"]) == 0  # nothing left of imgclf's: nothing to do
    assert "freed 0.0 MB" in capsys.readouterr().out


def test_more_training_processes_than_cpu_cores_are_refused(colours, capsys):
    assert main(["train", str(colours), "--devices", "99", "--device", "cpu"]) == 1
    assert "--devices 99: processes on the CPU share its" in capsys.readouterr().err


def test_train_backbone_auto_names_the_one_it_chose(colours, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(colours), "--mode", "probe", "--image-size", "64",
                 "--backbone", "auto", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    settings = json.loads((out / "settings.json").read_text())
    chosen = [row["backbone"] for row in settings["backbone_choice"] if row.get("chosen")]
    assert chosen == [settings["backbone"]]
    assert f"Backbone: {settings['backbone']}" in printed.out + printed.err


def test_train_backbone_auto_refuses_a_weights_file(colours, tmp_path, capsys):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")
    assert main(["train", str(colours), "--backbone", "auto", "--weights", str(weights),
                 "--out", str(tmp_path / "run")]) == 1
    assert "name it with --backbone" in capsys.readouterr().err


def test_ctrl_c_stops_imgclf_predict_cleanly_after_its_first_rows(colour_model, tmp_path,
                                                                    private_cache):
    """Rows stream while a thread reads ahead; Ctrl-C stops both at once: exit 130, one
    line saying so, no traceback, and only whole rows printed."""
    import os
    import signal
    import subprocess
    import sys

    photos, model = colour_model
    folder = tmp_path / "many"
    folder.mkdir()
    originals = sorted(photos.rglob("*.jpg"))
    for number in range(10_000):  # links: thousands of pictures, no disk spent
        os.symlink(originals[number % len(originals)], folder / f"{number:05d}.jpg")
    # one picture a batch: the run lasts long enough to be interrupted on any machine
    command = [sys.executable, "-m", "imgclf", "predict", str(model), str(folder), "--json",
               "--batch-size", "1"]
    subprocess.run([*command[:5], str(originals[0])], check=True, capture_output=True,
                   env={**os.environ, "IMGCLF_CACHE": str(private_cache)})  # graph built
    # Ctrl-C's default in the child: a shell's background job (CI, say) ignores it, and its
    # children inherit that
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "IMGCLF_CACHE": str(private_cache)},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = json.loads(process.stdout.readline())
    assert first["path"].endswith("00000.jpg") and first["label"] in ("red", "blue")
    process.send_signal(signal.SIGINT)
    rest, error = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "Interrupted." in error and "Traceback" not in error
    rows = [json.loads(line) for line in rest.splitlines()]  # every line printed is whole
    assert len(rows) < 9_999
