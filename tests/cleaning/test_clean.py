"""Cleaning: planted label flips, copies and off-topic pictures are found; decisions move files
(never delete them), are logged, can be undone byte for byte, and survive an interruption."""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imgclf import ImageData
from imgclf.cleaning.fixes import (LOG, Decision, apply_decisions, correct_csv, read_decisions,
                                   record_decision, undo, write_decisions)
from imgclf.cli import main
from imgclf.errors import DataError

pytest.importorskip("cleanlab")


def _shapes(path: Path, kind: str, seed: int, size: int = 96) -> Path:
    """A picture of a few circles or squares on a random background: each one different."""
    rng = np.random.default_rng(seed)
    picture = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(picture)
    for _ in range(int(rng.integers(2, 5))):
        x, y = (int(v) for v in rng.integers(0, size - 30, 2))
        side = int(rng.integers(18, 30))
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        (draw.ellipse if kind == "circles" else draw.rectangle)((x, y, x + side, y + side),
                                                                 fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, quality=92)
    return path


@pytest.fixture
def dirty(tmp_path):
    """circles/ and squares/ (24 each), with one square filed under circles, a re-encoded copy
    and a photo of noise that is neither."""
    root = tmp_path / "shapes"
    for index in range(24):
        _shapes(root / "circles" / f"c{index}.jpg", "circles", index)
        _shapes(root / "squares" / f"s{index}.jpg", "squares", 1000 + index)
    flipped = _shapes(root / "circles" / "odd.jpg", "squares", 5000)
    copy = root / "squares" / "s3-copy.jpg"
    Image.open(root / "squares" / "s3.jpg").save(copy, quality=60)
    noise = np.random.default_rng(7).integers(0, 255, (96, 96, 3)).astype("uint8")
    stranger = root / "squares" / "stranger.jpg"
    Image.fromarray(noise).save(stranger)
    return root, {"flipped": flipped, "copy": (root / "squares" / "s3.jpg", copy),
                  "stranger": stranger}


def test_planted_problems_are_found(dirty):
    from imgclf.cleaning.finding import find_issues

    root, planted = dirty
    data = ImageData.from_folder(root, image_size=64, num_workers=0, verbose=False)
    issues = find_issues(data, show_progress=False)
    labels = {issue.path: issue for issue in issues.of_kind("label")}
    assert planted["flipped"] in labels and labels[planted["flipped"]].suggested == "squares"
    pairs = {frozenset((issue.path, issue.other)) for issue in issues.rows
             if issue.kind in ("duplicate", "leakage", "conflict")}
    assert frozenset(planted["copy"]) in pairs
    assert planted["stranger"] in issues.paths("off_topic") | issues.paths("suspicious")
    flagged = issues.paths()
    assert len(flagged) <= 0.25 * issues.pictures  # not everything is a problem


def test_a_second_backbone_joins_the_evidence(dirty, monkeypatch, capsys):
    from imgclf.cleaning import finding

    root, planted = dirty
    widths, embedded = [], []  # the features the findings weigh; the passes that embedded
    screen, compute = finding.screen, finding.compute_embeddings
    monkeypatch.setattr(finding, "screen", lambda features, *args, **options: (
        widths.append(features.shape[1]), screen(features, *args, **options))[1])
    monkeypatch.setattr(finding, "compute_embeddings", lambda network, data, *args, **options: (
        embedded.append(data.backbone), compute(network, data, *args, **options))[1])
    arguments = ["clean", str(root), "--image-size", "64"]
    assert main([*arguments, "--second-backbone", "efficientnet_lite1"]) == 0
    assert widths == [1280 + 1280]  # efficientnet_lite0's and efficientnet_lite1's
    assert embedded == ["efficientnet_lite0"] * 2 + ["efficientnet_lite1"] * 2  # both splits
    issues = finding.Issues.from_csv(root / "issues.csv")
    labels = {issue.path: issue for issue in issues.of_kind("label")}
    assert planted["flipped"] in labels and labels[planted["flipped"]].suggested == "squares"
    assert planted["stranger"] in issues.paths("off_topic") | issues.paths("suspicious")
    pairs = {frozenset((issue.path, issue.other)) for issue in issues.rows
             if issue.kind in ("duplicate", "leakage", "conflict")}
    assert frozenset(planted["copy"]) in pairs
    capsys.readouterr()
    # a misspelt name, or the data's own backbone again: refused before any embedding
    assert main([*arguments, "--second-backbone", "efficientnet_lite9"]) == 1
    assert "Unknown backbone 'efficientnet_lite9'" in capsys.readouterr().err
    assert main([*arguments, "--second-backbone", "efficientnet_lite0"]) == 1
    assert "The second backbone is the data's own" in capsys.readouterr().err
    assert len(embedded) == 4 and widths == [2560]


def test_each_backbones_rows_line_up_and_a_picture_one_could_not_read_is_left_out(
        dirty, monkeypatch):
    from types import SimpleNamespace

    from imgclf.cleaning import finding
    from imgclf.data.sources import SPLITS
    from imgclf.training.embeddings import Embeddings

    data = ImageData.from_folder(dirty[0], image_size=64, num_workers=0, verbose=False)
    monkeypatch.setattr(finding, "Classifier", SimpleNamespace(
        create=lambda backbone, classes, weights=None: backbone))

    def embeddings(backbone, probe_data, split, **options):
        """Rows in a shuffled order, each saying which picture it is; the second backbone
        could not read a split's third picture."""
        order = np.random.default_rng(len(backbone) + len(split)).permutation(
            len(data.labelled(split)))
        if backbone == "efficientnet_lite1":
            order = order[order != 2]
        features = np.zeros((len(order), 3 if backbone == "efficientnet_lite0" else 5))
        features[:, 0] = order + 1
        return Embeddings(features=features, targets=np.zeros(len(order)), groups=order,
                          computed=len(order))

    monkeypatch.setattr(finding, "compute_embeddings", embeddings)
    items, first, joined, missing = finding._embeddings(data, False, "efficientnet_lite1")
    splits = [split for split in SPLITS if data.labelled(split)]
    kept = [(split, position) for split in splits
            for position in range(len(data.labelled(split))) if position != 2]
    assert items == [data.labelled(split)[position] for split, position in kept]
    assert missing == [data.labelled(split)[2] for split in splits]
    assert first.shape == (len(kept), 3) and joined.shape == (len(kept), 8)
    np.testing.assert_array_equal(first[:, 0], [position + 1 for _, position in kept])
    # the same picture on each row of both backbones' parts, each part scaled as a whole
    ratio = joined[:, 3] / joined[:, 0]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)


def test_the_report_shows_the_issues_and_reads_them_back(dirty, tmp_path, capsys):
    root, planted = dirty
    arguments = [str(root), "--image-size", "64"]
    assert main(["clean", *arguments]) == 0
    assert main(["train", *arguments, "--mode", "probe", "--out", str(tmp_path / "m")]) == 0
    assert main(["evaluate", str(tmp_path / "m" / "model.imgclf"), str(root), "--report",
                 str(tmp_path / "report.html")]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "Issues found in the data" in page and "odd.jpg" in page
    from imgclf.cleaning.finding import Issues

    again = Issues.from_csv(root / "issues.csv")
    assert planted["flipped"] in again.paths("label")


def _tree(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under root (the cleaning log and imgclf's hidden
    lock file left out)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != LOG and not p.name.startswith(".")}


def _folders(tmp_path) -> Path:
    root = tmp_path / "data"
    for label in ("cats", "dogs"):
        for index in range(4):
            _shapes(root / label / f"{label}{index}.jpg", "circles", index + 10 * len(label))
    return root


def test_apply_moves_logs_and_undo_restores_every_byte(tmp_path):
    root = _folders(tmp_path)
    before = _tree(root)
    decisions = [Decision(root / "cats" / "cats0.jpg", "remove"),
                 Decision(Path("cats/cats1.jpg"), "relabel", "dogs"),  # relative to the data
                 Decision(root / "dogs" / "dogs0.jpg", "keep")]
    applied = apply_decisions(root, decisions, classes=["cats", "dogs"])
    assert [(s.name, t.relative_to(root).as_posix()) for s, t in applied.moved] == [
        ("cats0.jpg", "_removed/cats/cats0.jpg"), ("cats1.jpg", "dogs/cats1.jpg")]
    assert sorted(_tree(root).values()) == sorted(before.values())  # moved, not lost
    data = ImageData.from_folder(root, num_workers=0, verbose=False)
    assert data.counts()["cats"]["train"] + data.counts()["cats"]["valid"] == 2  # _removed unread
    with open(root / LOG, newline="") as handle:
        assert [row["action"] for row in csv.DictReader(handle)] == ["remove", "relabel"]
    again = apply_decisions(root, decisions)  # rerun: finds the moves made
    assert (again.moved, again.already) == ([], 2)
    assert len(undo(root)) == 2
    assert _tree(root) == before
    assert undo(root) == []  # nothing left to undo


def test_a_name_already_taken_gets_a_number(tmp_path):
    root = _folders(tmp_path)
    shutil.copyfile(root / "cats" / "cats2.jpg", root / "dogs" / "cats2.jpg")
    applied = apply_decisions(root, [Decision(root / "cats" / "cats2.jpg", "relabel", "dogs")])
    assert applied.moved[0][1].name == "cats2-1.jpg"
    undo(root)
    assert (root / "cats" / "cats2.jpg").is_file() and (root / "dogs" / "cats2.jpg").is_file()


def test_an_interrupted_apply_can_be_rerun_or_undone(tmp_path, monkeypatch):
    root = _folders(tmp_path)
    before = _tree(root)
    decisions = [Decision(root / "cats" / f"cats{i}.jpg", "remove") for i in range(3)]
    real_replace, calls = os.replace, []

    def crash_on_second(source, target):
        calls.append(source)
        if len(calls) == 2:
            raise KeyboardInterrupt  # after the log line, before the move
        real_replace(source, target)

    monkeypatch.setattr("imgclf.cleaning.fixes.os.replace", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        apply_decisions(root, decisions)
    monkeypatch.setattr("imgclf.cleaning.fixes.os.replace", real_replace)
    assert sorted(_tree(root).values()) == sorted(before.values())  # nothing lost
    assert len(undo(root)) == 1  # the one move made; the logged one never made is passed over
    assert _tree(root) == before
    applied = apply_decisions(root, decisions)  # and a rerun finishes the job
    assert len(applied.moved) == 3 and not (root / "cats" / "cats0.jpg").exists()


def test_decisions_round_trip_and_the_last_one_counts(tmp_path):
    path = tmp_path / "decisions.csv"
    record_decision(path, Decision(Path("a.jpg"), "remove"))
    record_decision(path, Decision(Path("a.jpg"), "relabel", "dogs"))
    record_decision(path, Decision(Path("b.jpg"), "keep"))
    assert read_decisions(path) == [Decision(Path("a.jpg"), "relabel", "dogs"),
                                    Decision(Path("b.jpg"), "keep")]
    write_decisions(tmp_path / "again.csv", read_decisions(path))
    assert read_decisions(tmp_path / "again.csv") == read_decisions(path)
    with pytest.raises(DataError, match="Unknown action"):
        Decision(Path("a.jpg"), "delete")
    with pytest.raises(DataError, match="new label"):
        Decision(Path("a.jpg"), "relabel")


def test_a_relabel_to_an_unknown_class_is_refused(tmp_path):
    root = _folders(tmp_path)
    with pytest.raises(DataError, match="classes are cats, dogs"):
        apply_decisions(root, [Decision(root / "cats" / "cats0.jpg", "relabel", "cows")],
                        classes=["cats", "dogs"])
    assert (root / "cats" / "cats0.jpg").is_file()


def test_csv_labelled_data_gets_a_corrected_csv(tmp_path):
    root = _folders(tmp_path)
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n" + "".join(
        f"data/{p.parent.name}/{p.name},{p.parent.name}\n" for p in sorted(root.rglob("*.jpg"))))
    target = correct_csv(labels, [Decision(Path("data/cats/cats0.jpg"), "remove"),
                                  Decision(tmp_path / "data/cats/cats1.jpg", "relabel", "dogs")])
    with open(target, newline="") as handle:
        rows = {row["path"]: row["label"] for row in csv.DictReader(handle)}
    assert "data/cats/cats0.jpg" not in rows and rows["data/cats/cats1.jpg"] == "dogs"
    assert len(rows) == 7 and labels.read_text().count("\n") == 9  # the original unchanged


def test_cli_clean_auto_then_undo(dirty, capsys):
    root, planted = dirty
    before = _tree(root)
    arguments = ["clean", str(root), "--image-size", "64"]
    assert main(arguments) == 0
    assert "label" in capsys.readouterr().out and (root / "issues.csv").is_file()
    assert main([*arguments, "--auto"]) == 0
    assert "every move is in" in capsys.readouterr().out
    assert not planted["flipped"].exists()  # relabelled to squares
    assert (root / "squares" / "odd.jpg").exists()
    assert sorted(v for k, v in _tree(root).items() if k != "issues.csv") == sorted(before.values())
    assert main(["clean", str(root), "--undo"]) == 0
    assert {k: v for k, v in _tree(root).items() if k != "issues.csv"} == before


def test_paths_as_issues_csv_gives_them_are_found(tmp_path, monkeypatch):
    """issues.csv names files as `imgclf clean data` was given them: relative to the folder
    it ran in, not to the data folder."""
    _folders(tmp_path)
    monkeypatch.chdir(tmp_path)
    applied = apply_decisions(Path("data"), [Decision(Path("data/cats/cats0.jpg"), "remove")])
    assert applied.moved and (tmp_path / "data" / "_removed" / "cats" / "cats0.jpg").is_file()
    assert len(undo(Path("data"))) == 1 and (tmp_path / "data" / "cats" / "cats0.jpg").is_file()


def test_undo_twice_after_two_applies_moves_nothing_new(tmp_path):
    root = _folders(tmp_path)
    before = _tree(root)
    first = [Decision(root / "cats" / "cats0.jpg", "relabel", "dogs")]
    apply_decisions(root, first)
    undo(root)
    apply_decisions(root, first)  # again, after the undo
    undo(root)
    assert _tree(root) == before
    shutil.copyfile(root / "dogs" / "dogs1.jpg", root / "dogs" / "cats0.jpg")  # a new file
    assert undo(root) == [] and (root / "dogs" / "cats0.jpg").is_file()


def test_a_broken_link_can_be_removed_and_restored(tmp_path):
    root = _folders(tmp_path)
    (root / "cats" / "gone.jpg").symlink_to("nowhere.jpg")
    applied = apply_decisions(root, [Decision(root / "cats" / "gone.jpg", "remove")])
    assert len(applied.moved) == 1 and (root / "_removed" / "cats" / "gone.jpg").is_symlink()
    assert len(undo(root)) == 1 and (root / "cats" / "gone.jpg").is_symlink()


def test_nothing_moves_out_of_the_data_folder(tmp_path):
    root = tmp_path / "pets"  # labels from file names: no class folders
    _shapes(root / "cat_1.jpg", "circles", 1)
    with pytest.raises(DataError, match="not in a class folder"):
        apply_decisions(root, [Decision(root / "cat_1.jpg", "relabel", "dog")])
    _shapes(tmp_path / "elsewhere.jpg", "circles", 2)
    with pytest.raises(DataError, match="not inside"):
        apply_decisions(root, [Decision(tmp_path / "elsewhere.jpg", "remove")])
    assert (root / "cat_1.jpg").is_file() and not (tmp_path / "dog").exists()


def test_moves_wait_for_no_one(tmp_path):
    from imgclf._files import FolderLock
    from imgclf.errors import ImgclfError

    root = _folders(tmp_path)
    with FolderLock(root, "imgclf clean"):
        with pytest.raises(ImgclfError, match="in use by another imgclf clean"):
            apply_decisions(root, [Decision(root / "cats" / "cats0.jpg", "remove")])
    assert (root / "cats" / "cats0.jpg").is_file()


def test_a_csv_as_from_csv_reads_it_is_corrected(tmp_path, monkeypatch):
    """items_from_csv names files with the CSV's folder in front, as issues.csv then does."""
    root = _folders(tmp_path / "lists")
    labels = tmp_path / "lists" / "labels.csv"
    labels.write_text("path,label\n" + "".join(
        f"data/{p.parent.name}/{p.name},{p.parent.name}\n" for p in sorted(root.rglob("*.jpg"))))
    monkeypatch.chdir(tmp_path)
    target = correct_csv(Path("lists/labels.csv"),
                         [Decision(Path("lists/data/cats/cats0.jpg"), "remove")])
    assert "data/cats/cats0.jpg" not in target.read_text() and target.read_text().count("\n") == 8
    with pytest.raises(DataError, match="nothing to correct"):
        correct_csv(Path("lists/labels.csv"), [Decision(Path("other/x.jpg"), "remove")])



def test_out_of_fold_probabilities_do_not_depend_on_the_features_units():
    from imgclf.cleaning.finding import out_of_fold_probabilities

    # backbones differ in their features' scale and offset (and one backbone's features in
    # spread by orders of magnitude): each fold standardises, so one regularisation means the
    # same on all of them, and the threshold on these probabilities transfers
    generator = np.random.default_rng(0)
    targets = np.repeat([0, 1, 2], 40)
    features = generator.normal(0, 1, (120, 32)) + np.eye(3, 32)[targets] * 1.5
    plain = out_of_fold_probabilities(features, targets, 3, seed=0)
    rescaled = out_of_fold_probabilities(features * 50 + 7, targets, 3, seed=0)
    np.testing.assert_allclose(rescaled, plain, atol=1e-3)
    assert (plain.argmax(axis=1) == targets).mean() >= 0.7
