"""The review page of `imgclf clean --review`, without a browser: its handlers are called as the
page calls them. Decisions are saved the moment they are made and shown again on reload; Apply
moves the files and logs every move; the filters show what they say."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.cleaning.fixes import COLUMNS, LOG, read_decisions, undo
from imgclf.cleaning.review import ALL, ReviewPage, build_review
from imgclf.errors import DataError

gr = pytest.importorskip("gradio", reason="needs the serve extra")



def _photo(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (60, 80, 3)).astype("uint8")
    Image.fromarray(pixels).save(path, quality=90)
    return path


def write_issues(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({column: row.get(column, "") for column in COLUMNS})
    return path


@pytest.fixture
def flagged(tmp_path):
    """cats/ and dogs/ with four flagged pictures: a dog filed under cats (also a copy), an
    off-topic picture, a copy within dogs and a web page saved as a .jpg."""
    root = tmp_path / "pets"
    for index in range(4):
        _photo(root / "cats" / f"cat{index}.jpg", index)
        _photo(root / "dogs" / f"dog{index}.jpg", 100 + index)
    (root / "cats" / "broken.jpg").write_text("<html><body>Not found</body></html>")
    files = {name: root / name for name in
             ("cats/cat1.jpg", "dogs/dog2.jpg", "dogs/dog3.jpg", "cats/broken.jpg")}
    issues = write_issues(root / "issues.csv", [
        {"path": files["cats/cat1.jpg"], "kind": "label", "label": "cats", "suggested": "dogs",
         "score": "0.9100", "split": "train", "detail": "p(cats) = 0.05"},
        {"path": files["dogs/dog2.jpg"], "kind": "off_topic", "label": "dogs",
         "suggested": "cats", "score": "0.4000", "split": "valid",
         "detail": "outlier score 1.200 > 0.800"},
        {"path": files["cats/cat1.jpg"], "kind": "conflict", "label": "cats",
         "suggested": "dogs", "score": "0.9900", "split": "train",
         "other": root / "dogs" / "dog0.jpg", "detail": "embeddings 0.990 alike"},
        {"path": files["dogs/dog3.jpg"], "kind": "duplicate", "label": "dogs", "score": "1.0000",
         "split": "train", "other": root / "dogs" / "dog1.jpg",
         "detail": "the same file content"},
        {"path": files["cats/broken.jpg"], "kind": "unreadable", "label": "cats",
         "score": "1.0000", "detail": "not an image: it is an HTML page"},
    ])
    return root, issues, {name: str(path) for name, path in files.items()}


def _page(root: Path, issues: Path) -> ReviewPage:
    return ReviewPage(issues, root, ["cats", "dogs"])


def _grid(page: ReviewPage, kind: str = ALL, label: str = ALL):
    """(captions, paths) of the grid the page shows for these filters."""
    gallery, paths, _counts = page.on_show(kind, label)
    return [caption for _picture, caption in gallery["value"]], paths


def test_each_flagged_picture_is_shown_once_and_the_filters_work(flagged):
    root, issues, files = flagged
    page = _page(root, issues)
    captions, paths = _grid(page)
    assert paths == [files["cats/cat1.jpg"], files["dogs/dog2.jpg"], files["dogs/dog3.jpg"],
                     files["cats/broken.jpg"]]  # cat1 has two issues, one thumbnail
    assert captions[0] == "cat1.jpg | cats -> dogs | label+conflict 0.91"
    assert _grid(page, kind="duplicate")[1] == [files["dogs/dog3.jpg"]]
    assert _grid(page, kind="conflict")[1] == [files["cats/cat1.jpg"]]
    assert _grid(page, label="cats")[1] == [files["cats/cat1.jpg"], files["cats/broken.jpg"]]
    assert _grid(page, kind="off_topic", label="cats")[1] == []
    assert _grid(page, kind="off_topic", label="dogs")[1] == [files["dogs/dog2.jpg"]]
    assert "1 of 4 flagged pictures shown" in page.on_show("duplicate", ALL)[2]


def test_selecting_a_picture_shows_its_issues_and_suggests_its_class(flagged):
    root, issues, files = flagged
    page = _page(root, issues)
    _gallery, paths, _counts = page.on_show(ALL, ALL)
    current, preview, details, new_label, other = page.on_select(paths, 0)
    assert current == files["cats/cat1.jpg"]
    assert preview["value"].size == (80, 60)
    assert "likely mislabelled" in details and "a copy of a picture given another class" in details
    assert "`dogs/dog0.jpg`" in details and "Decision: none yet" in details
    assert new_label["value"] == "dogs"  # relabel defaults to the suggested class
    assert other["visible"] and other["value"] is not None  # the picture it copies, beside it
    # an unreadable file gets a card saying why, not an error
    *_, broken_preview, broken_details, _label, _other = page.on_select(paths, 3)
    assert broken_preview["value"].size == (640, 640)
    assert "not an image: it is an HTML page" in broken_details
    thumbnail = page.on_show(ALL, ALL)[0]["value"][3][0]
    assert Image.open(thumbnail).size == (page.thumbnail_side, page.thumbnail_side)


def test_relabel_and_remove_are_saved_at_once_and_shown_on_reload(flagged):
    root, issues, files = flagged
    page = _page(root, issues)
    _gallery, paths, _counts = page.on_show(ALL, ALL)
    cat, dog = files["cats/cat1.jpg"], files["dogs/dog3.jpg"]
    status, gallery, paths, counts, current, *_ = page.on_decide(
        "relabel", cat, "dogs", ALL, ALL, paths)
    assert status == "Saved: relabel to dogs `cats/cat1.jpg`."
    assert current == files["dogs/dog2.jpg"]  # on to the next picture
    assert gallery["selected_index"] == 1
    page.on_decide("remove", dog, None, ALL, ALL, paths)
    with open(root / "decisions.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows == [["path", "action", "label"], [cat, "relabel", "dogs"], [dog, "remove", ""]]
    assert not (root / LOG).exists()  # nothing moves before Apply

    reloaded = _page(root, issues)  # the page opened again, e.g. after a crash
    captions, _paths = _grid(reloaded)
    assert captions[0].endswith("| decided: relabel to dogs")
    assert captions[2].endswith("| decided: remove")
    assert "Decision: **relabel to dogs**" in reloaded.details(cat)
    assert "2 decision(s) in all" in reloaded.on_show(ALL, ALL)[2]
    # changing one's mind: the last decision per picture counts
    reloaded.on_decide("keep", cat, "dogs", ALL, ALL, _paths)
    assert {str(d.path): d.action for d in read_decisions(root / "decisions.csv")}[cat] == "keep"


def test_apply_moves_the_decided_files_logs_them_and_undo_brings_them_back(flagged):
    root, issues, files = flagged
    page = _page(root, issues)
    _gallery, paths, _counts = page.on_show(ALL, ALL)
    page.on_decide("relabel", files["cats/cat1.jpg"], "dogs", ALL, ALL, paths)
    page.on_decide("remove", files["dogs/dog3.jpg"], None, ALL, ALL, paths)
    page.on_decide("keep", files["dogs/dog2.jpg"], None, ALL, ALL, paths)
    text, gallery, *_ = page.on_apply(ALL, ALL, None)
    assert (root / "dogs" / "cat1.jpg").is_file() and not (root / "cats" / "cat1.jpg").exists()
    assert (root / "_removed" / "dogs" / "dog3.jpg").is_file()
    assert (root / "dogs" / "dog2.jpg").is_file()  # kept where it is
    assert text.startswith("Moved 2 file(s).")
    assert "`cats/cat1.jpg` -> `dogs/cat1.jpg`" in text
    assert "`dogs/dog3.jpg` -> `_removed/dogs/dog3.jpg`" in text
    assert f"imgclf clean {root} --undo" in text
    with open(root / LOG, newline="") as handle:
        log = [(row["action"], row["source"], row["target"]) for row in csv.DictReader(handle)]
    assert log == [("relabel", files["cats/cat1.jpg"], str(root / "dogs" / "cat1.jpg")),
                   ("remove", files["dogs/dog3.jpg"], str(root / "_removed/dogs/dog3.jpg"))]
    captions = [caption for _picture, caption in gallery["value"]]
    assert captions[0].endswith("| moved") and captions[2].endswith("| moved")
    with pytest.raises(gr.Error, match="already moved"):
        page.on_decide("remove", files["cats/cat1.jpg"], None, ALL, ALL, paths)
    # applied decisions are set aside: a second Apply has nothing to carry out again
    assert page.on_apply(ALL, ALL, None)[0].startswith("No decisions yet")
    assert list(root.glob("decisions-applied-*.csv"))
    assert len(undo(root)) == 2 and (root / "cats" / "cat1.jpg").is_file()


def test_mistakes_are_refused_in_plain_words(flagged, tmp_path):
    root, issues, files = flagged
    page = _page(root, issues)
    paths = page.on_show(ALL, ALL)[1]
    with pytest.raises(gr.Error, match="Click a picture first"):
        page.on_decide("remove", None, None, ALL, ALL, paths)
    with pytest.raises(gr.Error, match="Choose the class to relabel it to"):
        page.on_decide("relabel", files["dogs/dog2.jpg"], None, ALL, ALL, paths)
    with pytest.raises(gr.Error, match="already labelled dogs"):
        page.on_decide("relabel", files["dogs/dog2.jpg"], "dogs", ALL, ALL, paths)
    assert "No decisions yet" in page.on_apply(ALL, ALL, None)[0]
    with pytest.raises(DataError, match="No issues file at .*: run imgclf clean"):
        ReviewPage(tmp_path / "nothing.csv", root, ["cats", "dogs"])
    (tmp_path / "other.csv").write_text("file,class\na.jpg,cats\n")
    with pytest.raises(DataError, match="needs the columns path and kind"):
        ReviewPage(tmp_path / "other.csv", root, ["cats", "dogs"])


def test_relative_paths_are_read_from_the_folder_clean_ran_in(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = Path("pets")
    _photo(root / "cats" / "cat0.jpg", 0)
    _photo(root / "dogs" / "dog0.jpg", 1)
    issues = write_issues(root / "issues.csv", [
        {"path": "pets/cats/cat0.jpg", "kind": "label", "label": "cats", "suggested": "dogs",
         "score": "0.8"},
        {"path": "dogs/dog0.jpg", "kind": "off_topic", "label": "dogs", "score": "0.3"}])
    page = ReviewPage(issues, root, ["cats", "dogs"])
    paths = page.on_show(ALL, ALL)[1]
    assert paths == [str(tmp_path / "pets/cats/cat0.jpg"), str(tmp_path / "pets/dogs/dog0.jpg")]
    page.on_decide("relabel", paths[0], "dogs", ALL, ALL, paths)
    page.on_decide("remove", paths[1], None, ALL, ALL, paths)
    assert page.on_apply(ALL, ALL, None)[0].startswith("Moved 2 file(s).")
    assert (root / "dogs" / "cat0.jpg").is_file() and (root / "_removed/dogs/dog0.jpg").is_file()


def test_csv_labelled_data_gets_a_corrected_copy_instead_of_moves(tmp_path):
    root = tmp_path / "pets"
    for index in range(2):
        _photo(root / "pictures" / f"{index}.jpg", index)
    labels = root / "labels.csv"
    labels.write_text("path,label\npictures/0.jpg,cats\npictures/1.jpg,dogs\n")
    issues = write_issues(root / "issues.csv", [
        {"path": root / "pictures/0.jpg", "kind": "label", "label": "cats",
         "suggested": "dogs", "score": "0.9"},
        {"path": root / "pictures/1.jpg", "kind": "off_topic", "label": "dogs", "score": "0.5"}])
    page = ReviewPage(issues, root, ["cats", "dogs"], csv_file=labels)
    paths = page.on_show(ALL, ALL)[1]
    page.on_decide("relabel", paths[0], "dogs", ALL, ALL, paths)
    page.on_decide("remove", paths[1], None, ALL, ALL, paths)
    text = page.on_apply(ALL, ALL, None)[0]
    assert "labels.cleaned.csv" in text and "is unchanged" in text
    assert (root / "labels.cleaned.csv").read_text().splitlines() == ["path,label",
                                                                      "pictures/0.jpg,dogs"]
    assert (root / "pictures" / "1.jpg").is_file()  # nothing moved


def test_the_page_builds_with_its_controls(flagged):
    root, issues, _files = flagged
    demo = build_review(issues, root, ["cats", "dogs"])
    ids = {getattr(block, "elem_id", None) for block in demo.blocks.values()}
    assert {"flagged", "kind-filter", "class-filter", "keep", "relabel", "remove", "apply",
            "details", "new-label"} <= ids


def test_clean_review_finds_writes_issues_then_serves_the_page(flagged, monkeypatch, capsys):
    from imgclf.cleaning import finding as cleaning, review
    from imgclf.cli import main

    root, _issues, files = flagged
    (root / "cats" / "broken.jpg").unlink()
    found = cleaning.Issues([cleaning.Issue(Path(files["cats/cat1.jpg"]), "label", "cats",
                                            "train", 0.9, "dogs")], ["cats", "dogs"], 8, 1.0)
    monkeypatch.setattr(cleaning, "find_issues", lambda data, **options: found)
    served = {}
    monkeypatch.setattr(review, "serve_review",
                        lambda *args, **options: served.update(args=args, options=options))
    assert main(["clean", str(root), "--image-size", "64", "--review", "--port", "7999"]) == 0
    issues_file, served_root, classes = served["args"]
    assert Path(issues_file) == root / "issues.csv" and served_root == root
    assert list(classes) == ["cats", "dogs"] and served["options"]["port"] == 7999
    assert ReviewPage(issues_file, root, classes).pictures[0].suggested == "dogs"
