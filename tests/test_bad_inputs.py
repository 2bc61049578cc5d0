"""Every kind of bad input, generated here, through load_image, predict, train, evaluate and
POST /predict: each gets its reason (and a skip), never a traceback; odd but good pictures
are read; two runs never share an output folder; file names that are not UTF-8 survive."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf import ImageData, ImageError, ImgclfError, evaluate, load, load_image, train
from imgclf._files import LOCK, FolderLock
from imgclf.cli import main

# Pictures over this many pixels count as huge here (imgclf's real limit is 89 megapixels).
SMALL_LIMIT = 64 * 64


def _jpeg(size=(48, 48), colour=(200, 40, 40), **options) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(sum(size) + sum(colour))
    pixels = np.clip(rng.integers(0, 60, (size[1], size[0], 3)) + np.array(colour), 0, 255)
    Image.fromarray(pixels.astype("uint8")).save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


def _png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


# name -> (file name, bytes or a link target, what imgclf must say)
BAD = {
    "zero bytes": ("empty.jpg", b"", "empty"),
    "truncated JPEG": ("cut.jpg", _jpeg((64, 64))[:400], "truncated|corrupt"),
    "HTML page named .jpg": ("page.jpg", b"<!DOCTYPE html><html>404</html>", "HTML page"),
    "text file": ("notes.png", b'{"not": "a picture"}', "text file"),
    "SVG drawing": ("logo.png", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "SVG"),
    "random bytes": ("noise.jpg", bytes(range(256)) * 8, "not an image"),
    "damaged PNG": ("broken.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "corrupt"),
    "1x1 picture": ("beacon.png", _png(Image.new("RGB", (1, 1))), "too small"),
    "huge PNG": ("huge.png", _png(Image.new("RGB", (100, 100), (9, 9, 9))), "too large"),
    "broken link": ("gone.jpg", Path("nowhere.jpg"), "broken symbolic link"),
    "link loop": ("loop.jpg", Path("loop.jpg"), "link loop"),
}
# (read as bytes for the HTTP API: links have no bytes to send)
UPLOADS = {name: case for name, case in BAD.items() if isinstance(case[1], bytes)}


def _write(folder: Path, name: str, content: bytes | Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if isinstance(content, Path):
        path.symlink_to(content)
    else:
        path.write_bytes(content)
    return path


@pytest.fixture(autouse=True)
def small_limit(monkeypatch):
    monkeypatch.setattr("imgclf.data.decoding.MAX_PIXELS", SMALL_LIMIT)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A train/valid folder of red and blue photos with every bad file in both splits, a
    probe model trained on it, and its evaluation."""
    root = tmp_path_factory.mktemp("planted")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("imgclf.data.decoding.MAX_PIXELS", SMALL_LIMIT)
        patch.setenv("IMGCLF_CACHE", str(root / "cache"))
        for split, count in (("train", 10), ("valid", 4)):
            for label, colour in (("red", (190, 30, 30)), ("blue", (30, 30, 190))):
                for index in range(count):
                    _write(root / "data" / split / label, f"{index}.jpg",
                           _jpeg((56 + index, 48), colour))
            for name, content, _ in BAD.values():
                _write(root / "data" / split / "red", name, content)
        # a good picture whose name is not UTF-8 (Latin-1 "café")
        name = os.fsdecode(b"caf\xe9.jpg")
        _write(root / "data" / "valid" / "red", name, _jpeg((50, 50), (190, 30, 30)))
        data = ImageData.from_folder(root / "data", image_size=64, num_workers=0,
                                     verbose=False)
        model = train(data, mode="probe", output=root / "model", verbose=False)
        evaluation = evaluate(model.predictor(), data, split="valid")
    return root, data, evaluation


@pytest.mark.parametrize("kind", BAD)
def test_load_image_says_why(kind, tmp_path):
    name, content, reason = BAD[kind]
    path = _write(tmp_path, name, content)
    with pytest.raises(ImageError, match=reason) as raised:
        load_image(path)
    assert raised.value.source == str(path)


@pytest.mark.parametrize("kind", BAD)
def test_training_data_skips_and_lists_each_bad_file(planted, kind):
    root, data, _ = planted
    name, _, reason = BAD[kind]
    skipped = dict(data.report.skipped)
    for split in ("train", "valid"):
        path = root / "data" / split / "red" / name
        assert path in skipped, f"{path} was not listed"
        assert re.search(reason, skipped[path])
    assert all(item.path.name != name for split in data.items.values() for item in split)


def test_evaluate_counts_the_split_s_skipped_files(planted, capsys):
    root, _, evaluation = planted
    assert evaluation.summary()["skipped"] == len(BAD)
    assert evaluation.summary()["pictures"] == 9  # 8 photos and café
    assert main(["evaluate", str(root / "model" / "model.imgclf"), str(root / "data"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == len(BAD)


@pytest.mark.parametrize("kind", BAD)
def test_predict_skips_a_bad_file_and_says_why(planted, kind, tmp_path, capsys):
    root, _, _ = planted
    name, content, reason = BAD[kind]
    bad = _write(tmp_path, name, content)
    good = root / "data" / "valid" / "blue" / "0.jpg"
    model = str(root / "model" / "model.imgclf")
    assert main(["predict", model, str(good), str(bad)]) == 0
    output = capsys.readouterr()
    assert str(good) in output.out and "blue" in output.out
    assert str(bad) in output.err and re.search(reason, output.err)
    assert main(["predict", model, str(bad)]) == 1  # nothing could be predicted
    assert "No picture could be read" in capsys.readouterr().err
    with pytest.raises(ImageError, match=reason):
        load(model).predict(bad)
    # --json and --csv keep the bad file as a row with its error
    assert main(["predict", model, str(good), str(bad), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["path"] for row in rows] == [str(good), str(bad)]
    assert rows[0]["label"] == "blue" and re.search(reason, rows[1]["error"])
    assert main(["predict", model, str(good), str(bad), "--csv", str(tmp_path / "p.csv")]) == 0
    table = list(csv.DictReader(io.StringIO((tmp_path / "p.csv").read_text(encoding="utf-8"))))
    assert [row["path"] for row in table] == [str(good), str(bad)]
    assert table[0]["label"] == "blue" and table[0]["error"] == ""
    assert table[1]["label"] == "" and re.search(reason, table[1]["error"])


@pytest.mark.parametrize("kind", UPLOADS)
def test_the_http_api_answers_a_bad_upload_with_a_reason(planted, kind):
    testclient = pytest.importorskip("fastapi.testclient")
    from imgclf.serve.http import create_app

    root, _, _ = planted
    _, content, reason = UPLOADS[kind]
    app = create_app(root / "model" / "model.imgclf", with_gradio=False)
    with testclient.TestClient(app) as client:
        response = client.post("/predict", content=content,
                               headers={"content-type": "application/octet-stream"})
        assert response.status_code in (400, 413, 422), response.text
        message = response.json()["error"]
        assert re.search(reason if content else "Empty", message), message
        assert client.post("/predict", files={"file": ("x.jpg", content)}).status_code < 500


ODD_BUT_GOOD = {
    "CMYK JPEG": lambda: _cmyk(),
    "16-bit PNG": lambda: _png(Image.fromarray(np.full((20, 30), 40000, np.uint16))),
    "animated GIF": lambda: _gif(),
    "EXIF-rotated JPEG": lambda: _jpeg((40, 20), exif=_rotated()),
    "huge JPEG (read at reduced size)": lambda: _jpeg((100, 100)),
    "palette PNG with transparency": lambda: _png(Image.new("RGBA", (20, 20), (0, 0, 0, 0))
                                                  .convert("P")),
}


def _cmyk() -> bytes:
    buffer = io.BytesIO()
    Image.new("CMYK", (30, 20), (0, 200, 200, 0)).save(buffer, "JPEG")
    return buffer.getvalue()


def _gif() -> bytes:
    buffer = io.BytesIO()
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buffer.getvalue()


def _rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return exif.tobytes()


@pytest.mark.parametrize("kind", ODD_BUT_GOOD)
def test_odd_but_good_pictures_are_read_and_predicted(planted, kind):
    import imgclf.data.decoding

    root, _, _ = planted
    picture = load_image(ODD_BUT_GOOD[kind]())
    assert picture.mode == "RGB"
    assert picture.width * picture.height <= imgclf.data.decoding.MAX_PIXELS
    prediction = load(root / "model" / "model.imgclf").predict(ODD_BUT_GOOD[kind]())
    assert prediction.closest in ("red", "blue")


def test_names_that_are_not_utf8_survive_the_csv_and_the_report(planted, tmp_path, capsys):
    root, data, evaluation = planted
    model = str(root / "model" / "model.imgclf")
    folder = root / "data" / "valid" / "red"
    assert main(["predict", model, str(folder), "--csv", str(tmp_path / "out.csv")]) == 0
    text = (tmp_path / "out.csv").read_bytes().decode("utf-8")  # valid UTF-8
    rows = list(csv.DictReader(io.StringIO(text)))
    read = [row for row in rows if not row["error"]]  # the bad files are rows with an error
    assert len(read) == 5 and any(row["path"].endswith("caf\\xe9.jpg") for row in read)
    assert len(rows) == 5 + len(BAD)
    report = evaluation.report(tmp_path / "report.html", data=data)
    assert report.stat().st_size > 10_000
    report.read_bytes().decode("utf-8")
    assert main(["evaluate", model, str(root / "data"), "--report",
                 str(tmp_path / "cli.html")]) == 0
    assert (tmp_path / "cli.html").read_bytes().decode("utf-8").rstrip().endswith("</html>")


def test_an_empty_class_folder_is_reported(make_photo, tmp_path):
    for label in ("cats", "dogs"):
        for index in range(3):
            make_photo(f"data/{label}/{index}.jpg")
    (tmp_path / "data" / "birds").mkdir()
    with pytest.warns(UserWarning, match="birds"):
        data = ImageData.from_folder(tmp_path / "data", num_workers=0, verbose=False)
    assert data.classes == ["cats", "dogs"]


# --- two runs, one output folder -------------------------------------------------------------

HOLD = ("import sys, time\nfrom imgclf._files import FolderLock\n"
        "held = FolderLock(sys.argv[1], 'imgclf training run').__enter__()\n"
        "print('held', flush=True)\ntime.sleep(120)\n")


def _holder(folder: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_run_into_a_folder_in_use_is_refused(colours, tmp_path):
    data = ImageData.from_folder(colours, image_size=64, num_workers=0, verbose=False)
    holder = _holder(tmp_path / "run")
    try:
        with pytest.raises(ImgclfError, match=f"in use by another imgclf training run: "
                                               f"process {holder.pid}"):
            train(data, mode="probe", output=tmp_path / "run", verbose=False)
        assert not (tmp_path / "run" / "model.imgclf").exists()
        assert main(["train", str(colours), "--out", str(tmp_path / "run"), "--mode", "probe",
                     "--image-size", "64"]) == 1
    finally:
        holder.kill()
        holder.wait()
    # killed, its lock is stale: the next run takes it over and finishes
    with FolderLock(tmp_path / "run") as lock:
        assert lock.previous["pid"] == holder.pid
    train(data, mode="probe", output=tmp_path / "run", verbose=False)
    assert load(tmp_path / "run" / "model.imgclf").classes == ["blue", "red"]
    assert (tmp_path / "run" / LOCK).read_text() == ""  # released


def test_two_runs_in_one_process_cannot_share_a_folder(colours, tmp_path):
    data = ImageData.from_folder(colours, image_size=64, num_workers=0, verbose=False)

    class SecondRun:
        def on_train_start(self, learner, plan):
            with pytest.raises(ImgclfError, match="in use"):
                train(data, mode="probe", output=tmp_path / "run", verbose=False)

    train(data, mode="probe", output=tmp_path / "run", verbose=False, callbacks=[SecondRun()])


def test_a_second_collection_into_a_folder_in_use_is_refused(tmp_path):
    pytest.importorskip("httpx")
    from imgclf import collect

    with FolderLock(tmp_path / "data", "imgclf collection"):
        with pytest.raises(ImgclfError, match="in use by another imgclf collection"):
            collect(tmp_path / "data", ["cats"], per_class=1, providers="openverse",
                    show_progress=False)
