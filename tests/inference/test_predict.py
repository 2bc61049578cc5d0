"""Prediction: label, index and probabilities, bad files in place, and one serialization of a
prediction for every output (the HTTP API, `predict --json`, `predict --csv`; Ray's table is
checked against --csv in test_ray_batch.py)."""

from __future__ import annotations

import csv
import json

import pytest

from imgclf import ImageData, Predictor, train
from imgclf.cli import main
from imgclf.inference.prediction import table_columns

FAST = dict(image_size=64, batch_size=8, num_workers=0, verbose=False)


def test_predict_gives_label_index_and_probabilities(colours):
    data = ImageData.from_folder(colours, **FAST)
    learner = train(data, mode="fine_tune", epochs=1, freeze_epochs=3, learning_rate=5e-3,
                    verbose=False)
    prediction = learner.predict(colours / "red" / "0.jpg")
    assert prediction.label == "red" and prediction.index == data.classes.index("red")
    assert set(prediction.probabilities) == {"blue", "red"}
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_predict_batch_skips_bad_files_in_place(colours, tmp_path):
    data = ImageData.from_folder(colours, **FAST)
    predictor = train(data, mode="fine_tune", epochs=0, freeze_epochs=1, verbose=False).predictor()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff nothing")
    results = predictor.predict_batch(
        [colours / "red" / "1.jpg", broken, colours / "blue" / "1.jpg"], show_progress=False)
    assert results[0].label in ("red", "blue") and results[2].label in ("red", "blue")
    assert "corrupt image" in results[1].reason


def test_a_prediction_unpacks_like_fastais_tuple(colour_model):
    photos, path = colour_model
    prediction = Predictor.load(path).predict(sorted(photos.glob("red/*.jpg"))[0])
    label, index, probabilities = prediction  # as `model.predict(...)` in the tutorials
    assert (label, index) == ("red", 1)  # the classes: blue, red
    assert probabilities == list(prediction.probabilities.values())  # in class order
    assert probabilities[index] == prediction.probability > 0.5  # as fastai's probs[idx]
    assert prediction.label == "red"  # the fields stay


def test_the_json_line_the_api_answer_and_the_table_row_are_one_prediction(colour_model,
                                                                          tmp_path, capsys):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi", reason="needs the serve extra")
    from imgclf.serve.http import create_app
    from tests.serving import running

    photos, path = colour_model
    picture = photos / "blue" / "3.jpg"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"")
    predictor = Predictor.load(path)
    expected = predictor.predict(picture).to_dict()
    assert list(expected) == ["label", "index", "closest", "probability", "unknown",
                              "outlier_score", "top", "probabilities"]

    # an unreadable file is a line with its reason, and the run still succeeds
    assert main(["predict", str(path), str(picture), str(broken), "--json", "--top-k", "3"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0] == {"path": str(picture), **expected}
    assert lines[1] == {"path": str(broken), "error": "empty file (0 bytes)"}

    with running(create_app(path, with_gradio=False)) as url:
        answer = httpx.post(f"{url}/predict", content=picture.read_bytes(), timeout=30).json()
    assert answer == expected

    out = tmp_path / "predictions.csv"
    assert main(["predict", str(path), str(picture), str(broken), "--csv", str(out)]) == 0
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == table_columns(predictor.classes)
    assert rows[0]["path"] == str(picture) and rows[0]["label"] == expected["label"]
    assert [float(rows[0][name]) for name in predictor.classes] == pytest.approx(
        list(expected["probabilities"].values()), abs=1e-4)
    assert float(rows[0]["probability"]) == pytest.approx(expected["probability"], abs=1e-4)
    assert rows[0]["unknown"] == str(int(expected["unknown"]))
    assert rows[1]["path"] == str(broken) and rows[1]["error"] == "empty file (0 bytes)"
    assert rows[1]["label"] == ""
