"""Cleaning moves only what it should: pictures inside the data folder, as decided and checked
before anything moves, and undo moves back only what cleaning moved (issue #27, items 1, 3-6,
10 and 12: each case here failed before)."""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import pytest
from PIL import Image

from imgclf.cleaning.fixes import LOG, Decision, apply_decisions, correct_csv, undo, write_decisions
from imgclf.cli import main
from imgclf.errors import DataError


def _picture(path: Path, shade: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 40), (shade, 255 - shade, 90)).save(path, quality=90)
    return path


@pytest.fixture
def data(tmp_path) -> Path:
    """data/train/{ants,bees} (3 pictures each) and data/val/{ants,bees} (1 each)."""
    root = tmp_path / "data"
    for split, count in (("train", 3), ("val", 1)):
        for label in ("ants", "bees"):
            for index in range(count):
                _picture(root / split / label / f"{label}{index}.jpg", 20 * index + len(label))
    return root


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")
            and p.name != LOG}


def _log(root: Path, *rows: tuple[str, ...]) -> None:
    with open(root / LOG, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["time", "action", "source", "target"])
        writer.writerows(("2026-01-01 00:00:00", *row) for row in rows)


# --- 1. a cleaning-log.csv that came with the data ---------------------------------------

@pytest.mark.parametrize("case", ["outside file moved in", "outside file moved elsewhere"])
def test_undo_never_moves_a_file_a_foreign_log_points_outside(data, tmp_path, case):
    victim = _picture(tmp_path / "elsewhere" / "victim" / "v1.jpg", 7)
    if case == "outside file moved in":  # undo would move the victim into the data folder
        _log(data, ("remove", str(data / "stolen" / "v1.jpg"), str(victim)))
    else:  # undo would move it from one outside folder to another
        _log(data, ("remove", str(tmp_path / "third" / "v1.jpg"), str(victim)))
    before = _tree(data)
    done = undo(data)
    assert list(done) == [] and victim.is_file()
    assert [path for path, _ in done.left] == [victim]
    assert "outside" in done.left[0][1]
    assert _tree(data) == before and not (tmp_path / "third").exists()


def test_undo_leaves_a_file_that_is_not_the_one_moved(data):
    picture = data / "train" / "ants" / "ants0.jpg"
    apply_decisions(data, [Decision(picture, "remove")])
    removed = data / "_removed" / "train" / "ants" / "ants0.jpg"
    _picture(removed, 200)  # another picture put in its place since
    done = undo(data)
    assert list(done) == [] and removed.is_file() and not picture.exists()
    assert "content differs" in done.left[0][1]


# --- 3. folders that are links to elsewhere -------------------------------------------------

@pytest.mark.parametrize("action", ["remove", "relabel"])
def test_a_picture_through_a_linked_folder_is_not_moved(data, tmp_path, action):
    outside = _picture(tmp_path / "private" / "v3.jpg", 99)
    (data / "train" / "ants" / "linkdir").symlink_to(outside.parent, target_is_directory=True)
    decision = Decision(data / "train" / "ants" / "linkdir" / "v3.jpg", action,
                        "bees" if action == "relabel" else None)
    with pytest.raises(DataError, match="leads to .*outside"):
        apply_decisions(data, [decision])
    assert outside.is_file() and not (data / "_removed").exists()


def test_a_class_folder_that_links_elsewhere_receives_nothing(data, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (data / "train" / "wasps").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(DataError, match="outside"):
        apply_decisions(data, [Decision(data / "train" / "ants" / "ants0.jpg", "relabel",
                                        "wasps")])
    assert (data / "train" / "ants" / "ants0.jpg").is_file()
    assert not any((tmp_path / "elsewhere").iterdir())


# --- 4. CSV-labelled data -------------------------------------------------------------------

def test_a_second_apply_keeps_the_first_corrected_csv(data, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n" + "".join(
        f"{p.relative_to(tmp_path)},{p.parent.name}\n" for p in sorted(data.rglob("*.jpg"))))
    mine = tmp_path / "labels.cleaned.csv"
    mine.write_text("my own file\n")
    first = correct_csv(labels, [Decision(Path("data/train/ants/ants0.jpg"), "remove")])
    second = correct_csv(labels, [Decision(Path("data/train/ants/ants1.jpg"), "remove")])
    assert mine.read_text() == "my own file\n"
    assert len({mine, first, second}) == 3 and first.is_file() and second.is_file()
    assert "train/ants/ants0.jpg" not in first.read_text()
    assert "train/ants/ants1.jpg" not in second.read_text()


@pytest.mark.parametrize("label", ["../evil", "=HYPERLINK(\"http://x\",\"y\")", "+1", "@x",
                                   "a/b", "..", "-2", "_removed", "tab\there"])
def test_a_label_that_is_no_plain_name_is_refused(label):
    with pytest.raises(DataError, match="cannot be a class"):
        Decision(Path("a.jpg"), "relabel", label)


# --- 5. what a decisions row may name -------------------------------------------------------

@pytest.mark.parametrize("named", ["train/ants", ".", "", LOG, ".imgclf.lock", "decisions.csv",
                                   "issues.csv"])
def test_a_row_naming_no_picture_moves_nothing(data, named):
    (data / "issues.csv").write_text("path\n")
    (data / "decisions.csv").write_text("path,action,label\n")
    _log(data)
    before = _tree(data)
    decisions = [Decision(data / "train" / "bees" / "bees0.jpg", "remove"),
                 Decision(data / named if named else data, "remove"),
                 Decision(data / "train" / "bees" / "bees1.jpg", "remove")]
    with pytest.raises(DataError, match="nothing was moved"):
        apply_decisions(data, decisions)
    assert _tree(data) == before  # not even the good rows before the bad one


def test_one_picture_written_three_ways_is_one_decision_the_last(data, monkeypatch):
    monkeypatch.chdir(data.parent)
    picture = data / "train" / "ants" / "ants2.jpg"
    decisions = [Decision(picture, "remove"),
                 Decision(Path("data/train/ants/ants2.jpg"), "keep"),
                 Decision(Path("./data/train/ants/./ants2.jpg"), "relabel", "bees")]
    applied = apply_decisions(data, decisions, classes=["ants", "bees"])
    assert applied.moved == [(picture, data / "train" / "bees" / "ants2.jpg")]
    assert applied.skipped == []


def test_a_rerun_after_an_apply_that_emptied_a_class_finishes(data, capsys):
    """An apply killed after it moved every training picture of a class: the rerun must not
    need to read the data (which now has validation pictures of ants and no training ones)."""
    decisions = write_decisions(data.parent / "decisions.csv", [
        Decision(path, "remove") for path in sorted((data / "train" / "ants").glob("*.jpg"))])
    apply_decisions(data, [Decision(data / "train" / "ants" / "ants0.jpg", "remove"),
                           Decision(data / "train" / "ants" / "ants1.jpg", "remove"),
                           Decision(data / "train" / "ants" / "ants2.jpg", "remove")])
    assert main(["clean", str(data), "--apply", str(decisions)]) == 0
    assert "3 already moved" in capsys.readouterr().out


# --- 10. the data folder itself, a file that will not move -----------------------------------

@pytest.mark.parametrize("written", ["D", "D/."])
def test_the_data_folder_itself_is_refused_with_a_reason(data, written):
    path = data if written == "D" else Path(f"{data}/.")
    with pytest.raises(DataError, match="nothing was moved"):
        apply_decisions(data, [Decision(path, "remove")])
    assert not (data / LOG).exists() or "remove" not in (data / LOG).read_text()


def test_a_file_that_cannot_be_moved_is_an_error_with_what_to_do(data, monkeypatch):
    def refuse(source, target):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(DataError, match="Could not move .* Operation not permitted.*again"):
        apply_decisions(data, [Decision(data / "train" / "ants" / "ants0.jpg", "remove")])


# --- 12. undo says what it left -------------------------------------------------------------

def test_undo_names_a_file_it_leaves_in_removed(data, capsys):
    picture = data / "train" / "ants" / "ants0.jpg"
    apply_decisions(data, [Decision(picture, "remove")])
    _picture(picture, 123)  # a new file at the old place
    assert main(["clean", str(data), "--undo"]) == 1
    said = capsys.readouterr().err
    assert "_removed/train/ants/ants0.jpg" in said and "is taken" in said
    assert (data / "_removed" / "train" / "ants" / "ants0.jpg").is_file()


def test_an_undo_that_cannot_move_a_file_back_says_so_and_can_be_tried_again(data, monkeypatch):
    picture = data / "train" / "ants" / "ants0.jpg"
    apply_decisions(data, [Decision(picture, "remove")])
    real = os.replace

    def refuse(source, target):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "replace", refuse)
    done = undo(data)
    assert list(done) == [] and "Operation not permitted" in done.left[0][1]
    monkeypatch.setattr(os, "replace", real)
    assert len(undo(data)) == 1 and picture.is_file()
