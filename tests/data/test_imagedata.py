"""Sources, splits, verification and loaders on generated photos."""

from __future__ import annotations

import csv
import re
import os
import time

import pytest
import numpy as np
import torch

from imgclf import DataError, ImageData, Item, split_items
from imgclf.cli import main

QUIET = {"verbose": False, "num_workers": 0}


def test_class_folders_give_sorted_classes_and_a_stratified_split(class_folders):
    data = ImageData.from_folder(class_folders, valid_fraction=0.2, seed=42, **QUIET)
    assert data.classes == ["cats", "dogs"]
    assert data.counts() == {"cats": {"train": 8, "valid": 2, "test": 0},
                             "dogs": {"train": 8, "valid": 2, "test": 0}}


def test_split_is_reproducible_and_depends_on_the_seed(class_folders):
    def valid_names(seed):
        data = ImageData.from_folder(class_folders, seed=seed, **QUIET)
        return sorted(item.path.name for item in data.valid)

    assert valid_names(1) == valid_names(1)
    assert valid_names(1) != valid_names(2)


def test_every_class_gets_validation_pictures_even_when_small():
    items = [Item(f"{label}/{i}.jpg", label) for label, n in (("a", 40), ("b", 3)) for i in range(n)]
    split = split_items(items, valid_fraction=0.1, seed=0)
    valid = [item.label for item in split if item.split == "valid"]
    assert valid.count("a") == 4 and valid.count("b") == 1


def test_train_val_test_folders_give_the_split(make_photo, tmp_path):
    for split, count in (("train", 6), ("val", 3), ("test", 2)):
        for label in ("ants", "bees"):
            for index in range(count):
                make_photo(f"hym/{split}/{label}/{index}.jpg")
    data = ImageData.from_folder(tmp_path / "hym", **QUIET)
    assert (len(data.train), len(data.valid), len(data.test)) == (12, 6, 4)
    assert all("/train/" in str(item.path) for item in data.train)
    assert all("/test/" in str(item.path) for item in data.test)  # kept out of training


def test_nested_folders_take_the_parent_name(make_photo, tmp_path):
    for label in ("lion", "tiger"):
        for index in range(7):
            make_photo(f"cats/wild/{label}/{index}.jpg")
    assert ImageData.from_folder(tmp_path / "cats", **QUIET).classes == ["lion", "tiger"]


def test_csv_with_relative_paths_and_a_split_column(class_folders):
    rows = [{"file": f"{label}/{label}_{i}.jpg", "kind": label, "is_valid": i >= 7}
            for label in ("cats", "dogs") for i in range(10)]
    csv_path = class_folders / "labels.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "kind", "is_valid"])
        writer.writeheader()
        writer.writerows(rows)
    data = ImageData.from_csv(csv_path, path_column="file", label_column="kind",
                              split_column="is_valid", **QUIET)
    assert (len(data.train), len(data.valid)) == (14, 6)
    assert sorted(i.path.name for i in data.valid if i.label == "cats") == [
        "cats_7.jpg", "cats_8.jpg", "cats_9.jpg"]


def test_csv_with_a_missing_column_says_which_columns_exist(class_folders):
    csv_path = class_folders / "labels.csv"
    csv_path.write_text("filename,label\ncats/cats_0.jpg,cats\n")
    with pytest.raises(DataError, match="no column 'path'; its columns are filename, label"):
        ImageData.from_csv(csv_path, **QUIET)


def test_dataframe_source(class_folders):
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame({"path": [f"{l}/{l}_{i}.jpg" for l in ("cats", "dogs")
                                       for i in range(10)],
                              "label": ["cat"] * 10 + ["dog"] * 10})
    data = ImageData.from_dataframe(frame, root=class_folders, **QUIET)
    assert data.classes == ["cat", "dog"] and len(data.train) + len(data.valid) == 20


def test_labels_from_file_names(make_photo, tmp_path):
    for name in ("great_pyrenees_1.jpg", "great_pyrenees_22.jpg", "Abyssinian_3.jpg",
                 "Abyssinian_104.jpg"):
        make_photo(f"pets/{name}")
    data = ImageData.from_filenames(tmp_path / "pets", valid_fraction=0.5, **QUIET)
    assert data.classes == ["Abyssinian", "great_pyrenees"]


def test_bad_files_are_skipped_and_listed_not_fatal(class_folders, make_photo):
    (class_folders / "cats" / "empty.jpg").write_bytes(b"")
    (class_folders / "dogs" / "page.jpg").write_text("<html><body>404</body></html>")
    whole = make_photo("data/dogs/cut.jpg", size=(300, 200))
    whole.write_bytes(whole.read_bytes()[:2000])
    data = ImageData.from_folder(class_folders, **QUIET)
    skipped = {path.name: reason for path, reason in data.report.skipped}
    assert skipped["empty.jpg"] == "empty file (0 bytes)"
    assert "HTML page" in skipped["page.jpg"]
    assert "truncated" in skipped["cut.jpg"]
    assert len(data.train) + len(data.valid) == 20
    images, targets, _, errors = next(iter(data.train_loader()))
    assert images.shape[1:] == (3, 224, 224) and not errors


def test_a_placeholder_picture_is_flagged_suspicious(class_folders):
    from PIL import Image

    Image.new("RGB", (300, 300), (230, 230, 230)).save(class_folders / "cats" / "missing.gif")
    data = ImageData.from_folder(class_folders, **QUIET)
    assert [(p.name, "colours" in r) for p, r in data.report.suspicious] == [("missing.gif", True)]


def test_identical_files_in_train_and_valid_are_reported_as_leakage(make_photo, tmp_path):
    for split in ("train", "valid"):
        for label in ("a", "b"):
            for index in range(3):
                make_photo(f"d/{split}/{label}/{index}.jpg")
    original = tmp_path / "d/train/a/0.jpg"
    (tmp_path / "d/valid/a/copy.jpg").write_bytes(original.read_bytes())
    data = ImageData.from_folder(tmp_path / "d", **QUIET)
    assert [(a.name, b.name) for a, b in data.report.leakage] == [("0.jpg", "copy.jpg")]


@pytest.mark.parametrize("layout, message", [
    ({}, "No images found"),
    ({"cats": 6}, re.escape("Only one class found ('cats', 6 pictures)")),
    ({".": 3, "cats": 3}, "lie directly in"),
])
def test_unusable_layouts_say_what_to_do(make_photo, tmp_path, layout, message):
    (tmp_path / "d").mkdir()
    for folder, count in layout.items():
        for index in range(count):
            make_photo(f"d/{folder}/{index}.jpg")
    with pytest.raises(DataError, match=message):
        ImageData.from_folder(tmp_path / "d", **QUIET)


def test_a_class_with_only_broken_files_is_an_error(class_folders):
    for index in range(3):
        (class_folders / "birds").mkdir(exist_ok=True)
        (class_folders / "birds" / f"{index}.jpg").write_bytes(b"not a picture")
    with pytest.raises(DataError, match="'birds' has no usable pictures"):
        ImageData.from_folder(class_folders, **QUIET)


def test_wrong_path_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="No such folder"):
        ImageData.from_folder(tmp_path / "typo", **QUIET)


def test_small_classes_get_a_warning(class_folders, make_photo):
    for index in range(3):
        make_photo(f"data/birds/{index}.jpg")
    with pytest.warns(UserWarning, match="birds have fewer than 5"):
        data = ImageData.from_folder(class_folders, **QUIET)
    assert data.report.few_images == ["birds"]


def test_warnings_read_as_imgclf_messages(class_folders, make_photo):
    import warnings

    from imgclf.errors import ImgclfWarning

    for index in range(3):
        make_photo(f"data/birds/{index}.jpg")
    with pytest.warns(ImgclfWarning) as caught:
        ImageData.from_folder(class_folders, **QUIET)
    shown = warnings.formatwarning(caught[0].message, caught[0].category, caught[0].filename,
                                   caught[0].lineno)
    assert shown.startswith("imgclf: Class(es) birds") and "UserWarning" not in shown
    assert ".py" not in shown  # no file name or source line


def test_a_split_that_comes_with_the_data_says_valid_fraction_does_not_apply(make_photo,
                                                                              tmp_path):
    for label in ("ants", "bees"):
        for index in range(6):
            make_photo(f"data/train/{label}/{index}.jpg")
        for index in range(4):
            make_photo(f"data/val/{label}/{index}.jpg")
    with pytest.warns(UserWarning, match=r"8 of 20 pictures \(40%\).*valid_fraction=0.2 does "
                                         r"not apply"):
        data = ImageData.from_folder(tmp_path / "data", valid_fraction=0.2, seed=42, **QUIET)
    assert len(data.items["valid"]) == 8


def test_verification_is_cached_until_the_file_changes(class_folders, monkeypatch):
    ImageData.from_folder(class_folders, **QUIET)
    decoded = []
    import imgclf.data.verification

    real = imgclf.data.verification.load_image
    monkeypatch.setattr(imgclf.data.verification, "load_image", lambda src: decoded.append(1) or real(src))
    ImageData.from_folder(class_folders, **QUIET)
    assert decoded == []
    changed = class_folders / "cats" / "cats_0.jpg"
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    ImageData.from_folder(class_folders, **QUIET)
    assert len(decoded) == 1


def test_large_photos_are_trained_from_a_small_cached_copy(make_photo, tmp_path):
    from PIL import Image

    for label in ("a", "b"):
        for index in range(3):
            make_photo(f"big/{label}/{index}.jpg", size=(2000, 1500))
    data = ImageData.from_folder(tmp_path / "big", **QUIET)
    copy = data.copies[data.train[0].path]
    assert min(Image.open(copy).size) == 448 and copy.stat().st_size < 1_000_000


@pytest.mark.parametrize("resize", ["crop", "squish", "pad"])
def test_every_resize_method_gives_square_batches(class_folders, resize):
    data = ImageData.from_folder(class_folders, resize=resize, image_size=96, batch_size=4, **QUIET)
    for loader in (data.train_loader(), data.valid_loader()):
        images, targets, _, _ = next(iter(loader))
        assert images.shape == (4, 3, 96, 96) and targets.dtype == torch.int64


def test_pad_keeps_the_whole_picture(make_photo, tmp_path):
    from imgclf.config import InputConfig
    from imgclf.data.decoding import load_image
    from imgclf.data.transforms import eval_transform

    wide = make_photo("wide.jpg", size=(200, 50), tint=(55, 55, 55))
    config = InputConfig(64, (0.0,) * 3, (1.0,) * 3, resize="pad")
    padded = eval_transform(config)(load_image(wide))
    assert abs(padded[:, :20, :]).max() == 0  # black band on top
    assert padded[:, 32, :].mean() > 0.3        # the picture across the middle


def test_validation_is_deterministic_and_training_is_random(class_folders):
    data = ImageData.from_folder(class_folders, **QUIET)
    valid = data.dataset("valid")
    assert np.array_equal(valid[0][0], valid[0][0])
    train = data.dataset("train")
    assert not np.array_equal(train[0][0], train[0][0])


def test_batch_size_and_drop_last_protect_batch_norm(class_folders):
    data = ImageData.from_folder(class_folders, batch_size=5, **QUIET)  # 16 train pictures
    sizes = [len(batch[0]) for batch in data.train_loader()]
    assert sizes == [5, 5, 5]


def test_balanced_sampling_draws_classes_equally(make_photo, tmp_path):
    for label, count in (("common", 40), ("rare", 5)):
        for index in range(count):
            make_photo(f"d/{label}/{index}.jpg", size=(40, 40))
    data = ImageData.from_folder(tmp_path / "d", balance=True, image_size=32, valid_fraction=0.1,
                                 **QUIET)
    loader = data.train_loader()
    drawn = torch.cat([batch[1] for _ in range(10) for batch in loader])  # 10 epochs
    rare_share = (drawn == data.class_index["rare"]).float().mean().item()
    assert 0.35 < rare_share < 0.65  # unweighted it would be about 0.11


def test_loader_with_workers_matches_zero_workers(class_folders):
    with_workers = ImageData.from_folder(class_folders, verbose=False, num_workers=2)
    no_workers = ImageData.from_folder(class_folders, verbose=False, num_workers=0)
    a = torch.cat([b[0] for b in with_workers.valid_loader()])
    b = torch.cat([b[0] for b in no_workers.valid_loader()])
    assert torch.equal(a, b)


@pytest.mark.parametrize("augment", [True, False])
def test_show_batch_draws_labelled_pictures(class_folders, augment):
    data = ImageData.from_folder(class_folders, **QUIET)
    figure = data.show_batch(n=6, augment=augment)
    titles = [axis.get_title() for axis in figure.axes if axis.get_title()]
    assert len(titles) == 6 and set(titles) <= {"cats", "dogs"}
    shown = [axis.get_images()[0].get_array() for axis in figure.axes if axis.get_images()]
    assert len(shown) == 6 and all(0 <= picture.min() <= picture.max() <= 1
                                   for picture in shown)


@pytest.mark.parametrize("flags", [["--augment"], []])
def test_cli_show_batch_writes_a_png(class_folders, tmp_path, flags):
    out = tmp_path / "batch.png"
    assert main(["show-batch", str(class_folders), *flags, "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_loading_leaves_the_callers_warning_filters_alone(class_folders):
    import warnings

    before = list(warnings.filters)
    ImageData.from_folder(class_folders, **QUIET)
    assert warnings.filters == before


def test_adding_a_class_leaves_the_other_classes_split_alone(class_folders, make_photo):
    before = ImageData.from_folder(class_folders, **QUIET)
    for index in range(10):
        make_photo(f"data/birds/{index}.jpg")
    after = ImageData.from_folder(class_folders, **QUIET)
    assert {i.path for i in before.valid} <= {i.path for i in after.valid}


def test_a_check_alone_reuses_a_verdict_made_with_copies(class_folders, monkeypatch):
    # `imgclf evaluate` reads the data without copies, at the model's size: the verdicts that
    # training made (with copies at twice another size) answer it without decoding again
    from imgclf.data.verification import verify_files

    paths = sorted(class_folders.rglob("*.jpg"))
    made = verify_files(paths, copy_side=448, show_progress=False)
    assert all(verdict.ok and verdict.copy for verdict in made)

    def decode(*_):
        raise AssertionError("decoded again")

    monkeypatch.setattr("imgclf.data.verification._verify_one", decode)
    again = verify_files(paths, copy_side=None, show_progress=False)
    assert [v.sha256 for v in again] == [v.sha256 for v in made]
    assert all(v.copy is None for v in again)
    with pytest.raises(AssertionError, match="decoded again"):  # a copy of another size
        verify_files(paths[:1], copy_side=576, show_progress=False)
    paths[1].write_bytes(paths[2].read_bytes())  # a changed file is checked again
    with pytest.raises(AssertionError, match="decoded again"):
        verify_files(paths[1:2], copy_side=None, show_progress=False)
