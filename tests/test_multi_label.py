"""Several labels per picture, through the whole workflow: a CSV with label_delim, the probe's
one-vs-rest head and fine-tuning's binary cross-entropy, per-label thresholds, evaluation,
prediction, the model file, ONNX, the HTTP API and the command line.

The pictures are noise with some of three shapes drawn on it (a red circle, a blue square, a
green triangle), each present or absent on its own.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

SHAPES = {"circle": (220, 40, 40), "square": (40, 80, 220), "triangle": (40, 200, 60)}
SIDE = 96


def shapes_picture(path, generator, present) -> None:
    pixels = generator.integers(0, 150, (SIDE, SIDE, 3)).astype("uint8")
    picture = Image.fromarray(pixels)
    draw = ImageDraw.Draw(picture)
    for shape in present:
        x, y = (int(v) for v in generator.integers(0, SIDE - 34, 2))
        if shape == "circle":
            draw.ellipse((x, y, x + 32, y + 32), fill=SHAPES[shape])
        elif shape == "square":
            draw.rectangle((x, y, x + 30, y + 30), fill=SHAPES[shape])
        else:
            draw.polygon([(x, y + 32), (x + 16, y), (x + 32, y + 32)], fill=SHAPES[shape])
    picture.save(path)


def shapes_csv(folder, count: int = 120, seed: int = 0, delimiter: str = " ") -> tuple:
    """folder/labels.csv (path, label) over `count` generated pictures; (csv path, rows)."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        present = [shape for shape in SHAPES if generator.random() < 0.45]
        shapes_picture(folder / f"{index}.png", generator, present)
        rows.append((f"{index}.png", delimiter.join(present)))
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows(rows)
    return folder / "labels.csv", rows


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """(csv file, rows, data, model file of a probe run, new pictures with their labels)."""
    import os

    from imgclf import ImageData, train

    root = tmp_path_factory.mktemp("shapes")
    os.environ["IMGCLF_CACHE"] = str(root / "cache")
    table, rows = shapes_csv(root / "data")
    generator = np.random.default_rng(7)
    new = {}
    for index, present in enumerate([["circle"], ["square", "triangle"], [],
                                     ["circle", "square", "triangle"], ["triangle"]]):
        path = root / "new" / f"{index}.png"
        path.parent.mkdir(exist_ok=True)
        shapes_picture(path, generator, present)
        new[path] = present
    data = ImageData.from_csv(table, label_delim=" ", image_size=128, num_workers=0,
                              verbose=False)
    train(data, mode="probe", output=root / "model", verbose=False)
    return table, rows, data, root / "model" / "model.imgclf", new


# --- data ---


def test_a_label_column_with_several_labels_is_read_as_sets(tmp_path, make_photo):
    from imgclf import ImageData
    from imgclf.data.sources import items_from_csv, labels_from

    for index in range(12):
        make_photo(f"p/{index}.jpg")
    cells = ["car person", "person car car", "", "bus", "bus  person"] + ["car"] * 7
    (tmp_path / "labels.csv").write_text("path,label\n" + "".join(
        f"p/{index}.jpg,{cell}\n" for index, cell in enumerate(cells)))
    items = items_from_csv(tmp_path / "labels.csv", label_delim=" ")
    assert [item.label for item in items[:5]] == [
        ("car", "person"), ("car", "person"), (), ("bus",), ("bus", "person")]
    (tmp_path / "semi.csv").write_text("path,label\np/0.jpg,car; person\np/1.jpg,\n")
    assert [item.label for item in items_from_csv(tmp_path / "semi.csv", label_delim=";")] == [
        ("car", "person"), ()]
    assert labels_from("red car\tblue bus\t", "\t") == ("blue bus", "red car")  # tabs only

    with pytest.warns(UserWarning, match="bus, person"):  # on fewer than 5 training pictures
        data = ImageData.from_csv(tmp_path / "labels.csv", label_delim=" ", num_workers=0,
                                  valid_fraction=0.25, verbose=False)
    assert data.multi_label and data.classes == ["bus", "car", "person"]
    assert data.config.label_delim == " "  # saved with the run: evaluate reads alike
    counts = data.counts()
    assert sum(row["train"] + row["valid"] for row in counts.values()) == 8 + 3 + 3
    assert data.summary()["pictures"]["train"] + data.summary()["pictures"]["valid"] == 12
    item = next(item for item in data.train + data.valid if item.label == ("car", "person"))
    assert data.target(item).tolist() == [0.0, 1.0, 1.0]
    empty = next(item for item in data.train + data.valid if item.label == ())
    assert data.target(empty).tolist() == [0.0, 0.0, 0.0] and empty in data.labelled(
        empty.split)  # a picture with none of the labels is negative for all, not unlabelled
    images, targets, _, _ = next(iter(data.loader("train", shuffle=False)))
    assert targets.dtype.is_floating_point and targets.shape == (len(images), 3)


def test_multi_label_data_that_cannot_train_says_why(tmp_path, make_photo):
    from imgclf import ImageData
    from imgclf.errors import DataError

    for index in range(6):
        make_photo(f"p/{index}.jpg")
    (tmp_path / "none.csv").write_text("path,label\n" + "".join(
        f"p/{index}.jpg,\n" for index in range(6)))
    with pytest.raises(DataError, match="No usable picture carries a label"):
        ImageData.from_csv(tmp_path / "none.csv", label_delim=" ", verbose=False)
    (tmp_path / "some.csv").write_text("path,label\n" + "".join(
        f"p/{index}.jpg,a b\n" for index in range(6)))
    with pytest.raises(DataError, match="one label per picture"):
        ImageData.from_csv(tmp_path / "some.csv", label_delim=" ", balance=True, verbose=False)


def test_a_random_split_keeps_every_label_in_training():
    """Multi-label pictures are drawn from one pool; a label the draw left in validation only
    gets a picture back, on every seed (a rare label must be learnt before it is judged)."""
    from imgclf.data.sources import Item, split_items

    items = ([Item(f"p{index}.jpg", ("common",)) for index in range(46)]
             + [Item("rare.jpg", ("common", "rare")), Item("pair0.jpg", ("pair",)),
                Item("pair1.jpg", ("pair",)), Item("given.jpg", ("given",), split="valid")])
    for seed in range(40):
        split = split_items(items, valid_fraction=0.2, seed=seed)
        trained = {label for item in split if item.split == "train" for label in item.label}
        assert {"common", "rare", "pair"} <= trained, seed
        assert split[-1].split == "valid"  # a split the data gave is kept
        assert 8 <= sum(item.split == "valid" for item in split) <= 11
        assert split == split_items(items, valid_fraction=0.2, seed=seed)  # seeded


# --- thresholds and the head ---


def test_each_label_gets_the_threshold_of_its_best_f1():
    from imgclf.calibration import DEFAULT_THRESHOLD, best_thresholds, f1_scores

    probabilities = np.array([[0.30, 0.9, 0.2], [0.35, 0.8, 0.1], [0.10, 0.2, 0.3],
                              [0.20, 0.6, 0.4]])
    targets = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0], [0, 0, 0]])
    chosen = best_thresholds(probabilities, targets)
    # label 0: present at 0.30 and 0.35, absent at 0.10 and 0.20: a threshold in (0.20, 0.30]
    assert 0.2 < chosen[0] <= 0.3
    assert f1_scores(probabilities, targets, chosen)[0] == 1.0
    assert f1_scores(probabilities, targets, np.full(3, 0.5))[0] == 0.0  # 0.5 misses both
    # label 1: 0.5 is already perfect, and ties go to the threshold nearest 0.5
    assert chosen[1] == pytest.approx(0.61)
    assert chosen[2] == DEFAULT_THRESHOLD  # never present here: nothing to choose on


def test_the_one_vs_rest_head_learns_each_label_and_survives_a_constant_one():
    from imgclf.training.embeddings import Embeddings
    from imgclf.training.head_fit import fit_multi_label_head

    generator = np.random.default_rng(0)
    targets = (generator.random((240, 3)) < 0.4).astype(np.float32)
    targets[:, 2] = 1  # on every picture
    features = generator.normal(size=(240, 32)).astype(np.float32)
    features[:, :2] += 3 * targets[:, :2]  # label 0 and 1 each move one feature
    fit = fit_multi_label_head(Embeddings(features, targets, np.arange(240), 240), 3, seed=0)
    logits = features @ fit.weight.T + fit.bias
    given = logits > 0
    assert (given[:, :2] == (targets[:, :2] > 0)).mean() > 0.9
    assert given[:, 2].all()  # the constant label is a constant: always given
    assert fit.cv_loss is not None and fit.cv_accuracy > 0.9


# --- the workflow ---


def test_a_probe_run_gives_sets_of_labels_with_thresholds_it_chose(shapes):
    import imgclf
    from imgclf.modelfile import load_model

    _, _, data, model_file, new = shapes
    model = imgclf.load(model_file)
    assert model.multi_label and model.info.multi_label
    assert len(model.info.thresholds) == 3 and model.thresholds.tolist() == list(
        model.info.thresholds)
    assert model.info.data.label_delim == " "
    assert model.info.unknown.score == "knn" and model.info.unknown.softmax_weight == 0
    right = 0
    for path, present in new.items():
        prediction = model.predict(path)
        assert prediction.labels is not None
        assert prediction.label == ";".join(prediction.labels) or prediction.unknown
        right += set(prediction.labels) == set(present)
        answer = prediction.to_dict()
        assert answer["labels"] == list(prediction.labels)
        assert set(answer["probabilities"]) == set(data.classes)
    assert right >= 4  # of 5 new pictures, every label right
    # the probabilities are each label's own: several can be near 1 at once
    every = model.predict(list(new)[3])
    assert sum(p > 0.5 for p in every.probabilities.values()) >= 2
    # the file says what it is, so that an imgclf from before multi-label refuses it
    from safetensors import safe_open

    with safe_open(str(model_file), framework="pt") as handle:
        assert handle.metadata()["format_version"] == "5"
    assert load_model(model_file)[1].multi_label


def test_evaluation_of_a_multi_label_model(shapes):
    from imgclf.evaluation.metrics import evaluate
    from imgclf.evaluation.multilabel import MultiLabelEvaluation

    _, _, data, model_file, _ = shapes
    evaluation = evaluate(model_file, data, show_progress=False)
    assert isinstance(evaluation, MultiLabelEvaluation)
    summary = evaluation.summary()
    assert summary["mean_average_precision"] >= 0.9
    assert summary["macro_f1"] >= summary["macro_f1_at_0.5"] - 1e-9  # chosen on these
    rows = evaluation.per_label()
    assert [row["label"] for row in rows] != [] and {row["label"] for row in rows} == set(
        data.classes)
    assert rows[0]["average_precision"] <= rows[-1]["average_precision"]  # weakest first
    # the same figures by hand: exact match and accuracy_multi
    truth = evaluation.targets > 0.5
    assert evaluation.exact_match == pytest.approx(
        ((evaluation.probabilities >= evaluation.thresholds) == truth).all(axis=1).mean())
    assert evaluation.accuracy == pytest.approx(
        ((evaluation.probabilities >= 0.5) == truth).mean())
    # the model file's accuracy is the one training printed, and evaluate gives it again
    assert evaluation.info.metrics["accuracy"] == pytest.approx(evaluation.accuracy)
    assert evaluation.info.metrics["valid_loss"] == pytest.approx(evaluation.loss, abs=1e-6)
    assert "mean average precision" in evaluation._repr_html_()
    top = evaluation.top_losses(3, label="square")
    assert len(top) == 3 and all("given" in entry for entry in top)
    evaluation.plot_per_label()


def test_the_report_of_a_multi_label_model(shapes, tmp_path):
    from imgclf.evaluation.metrics import evaluate

    _, _, data, model_file, _ = shapes
    page = evaluate(model_file, data, show_progress=False).report(tmp_path / "r.html")
    text = page.read_text()
    assert "Per label, weakest first" in text and text.count("data:image/") >= 4
    assert all(label in text for label in data.classes)


def test_a_probe_learners_evaluate_reads_cached_embeddings_with_each_labels_threshold(
        shapes, monkeypatch):
    """learner.evaluate() after a probe: the head's sigmoid on the cached embeddings, the
    thresholds training chose, the figures of the pass through the network."""
    from imgclf import train
    from imgclf.evaluation.metrics import evaluate
    from imgclf.evaluation.multilabel import MultiLabelEvaluation

    _, _, data, _, _ = shapes
    learner = train(data, mode="probe", verbose=False)

    def no_network(*args, **options):
        raise AssertionError("the network ran: the cached embeddings were not used")

    with monkeypatch.context() as patch:
        patch.setattr("imgclf.training.embeddings.accelerated", no_network)
        patch.setattr("imgclf.inference.loop.run", no_network)
        cached = learner.evaluate()
    through = evaluate(learner, data, show_progress=False)
    assert isinstance(cached, MultiLabelEvaluation)
    np.testing.assert_allclose(cached.probabilities, through.probabilities, atol=1e-5)
    np.testing.assert_array_equal(cached.targets, through.targets)
    assert tuple(cached.thresholds) == tuple(through.thresholds) == learner.thresholds
    assert cached.summary()["mean_average_precision"] == pytest.approx(
        through.summary()["mean_average_precision"], abs=1e-6)
    assert cached.exact_match == through.exact_match


def test_thresholds_can_be_changed_when_a_model_is_loaded(shapes):
    import imgclf
    from imgclf.errors import ImgclfError

    _, _, _, model_file, new = shapes
    path = list(new)[2]  # no shape
    nothing = imgclf.load(model_file).predict(path)
    assert nothing.labels == () or nothing.unknown
    everything = imgclf.load(model_file, thresholds=0.0).predict(path)
    assert everything.unknown or everything.labels == ("circle", "square", "triangle")
    model = imgclf.load(model_file, thresholds={"circle": 0.0})
    assert model.thresholds[0] == 0.0 and model.thresholds[1] == model.info.thresholds[1]
    for wrong in ({"dog": 0.5}, 1.5, 1.0, {"circle": "high"}):
        with pytest.raises(ImgclfError):
            model.set_thresholds(wrong)


def test_a_single_label_model_has_no_thresholds_and_data_of_the_other_kind_is_refused(
        shapes, colour_model):
    import imgclf
    from imgclf import ImageData
    from imgclf.errors import DataError, ImgclfError
    from imgclf.evaluation.metrics import evaluate

    photos, single = colour_model
    with pytest.raises(ImgclfError, match="multi-label"):
        imgclf.load(single, thresholds=0.4)
    _, _, data, model_file, _ = shapes
    with pytest.raises(DataError, match="several labels per picture"):
        evaluate(model_file, ImageData.from_folder(photos, verbose=False), show_progress=False)
    with pytest.raises(DataError, match="one label per picture"):
        evaluate(single, data, show_progress=False)


def test_a_stranger_is_unknown_by_its_distance_whatever_the_labels(shapes, tmp_path):
    import imgclf

    _, _, _, model_file, new = shapes
    model = imgclf.load(model_file)
    ramp = np.linspace(0, 255, 128).astype("uint8")
    stranger = np.stack([np.tile(ramp, (128, 1)), np.tile(ramp[:, None], (1, 128)),
                         np.full((128, 128), 90, "uint8")], axis=2)
    Image.fromarray(stranger).save(tmp_path / "gradient.png")
    answer = model.predict(tmp_path / "gradient.png")
    assert answer.unknown and answer.labels == () and answer.label == "unknown"
    assert sum(model.predict(path).unknown for path in new) <= 1


def test_onnx_export_gives_each_labels_own_probability(shapes, tmp_path):
    pytest.importorskip("onnxruntime")
    import imgclf
    from imgclf.inference.onnx_export import export_onnx

    _, _, _, model_file, new = shapes
    export_onnx(model_file, tmp_path / "shapes.onnx")
    exported, original = imgclf.load(tmp_path / "shapes.onnx"), imgclf.load(model_file,
                                                                             runtime="torch")
    assert exported.multi_label and exported.thresholds.tolist() == original.thresholds.tolist()
    for path in new:
        a, b = exported.predict(path), original.predict(path)
        assert a.labels == b.labels
        assert max(abs(a.probabilities[c] - b.probabilities[c]) for c in a.probabilities) < 1e-4
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "shapes.onnx"))
    picture = np.stack([exported.transform.read(path) for path in list(new)[3:4]])
    assert [output.name for output in session.get_outputs()][0] == "label_probabilities"
    probabilities = session.run(["label_probabilities"], {"images": picture})[0]
    assert probabilities.sum() > 1.5  # sigmoid outputs: not one distribution


def test_the_http_api_answers_with_the_labels(shapes):
    pytest.importorskip("fastapi", reason="needs the serve extra")
    httpx = pytest.importorskip("httpx")
    from imgclf.serve.http import create_app
    from tests.serving import running

    _, _, _, model_file, new = shapes
    with running(create_app(model_file)) as url:
        described = httpx.get(f"{url}/model").json()
        assert described["multi_label"] and set(described["thresholds"]) == set(SHAPES)
        path = list(new)[1]
        answer = httpx.post(f"{url}/predict", content=path.read_bytes(),
                            headers={"content-type": "image/png"}).json()
    import imgclf

    assert answer["labels"] == list(imgclf.load(model_file).predict(path).labels)
    with running(create_app(model_file, with_gradio=False, thresholds={"circle": 0.0})) as url:
        described = httpx.get(f"{url}/model").json()  # imgclf serve --threshold circle=0
    assert described["thresholds"]["circle"] == 0.0
    assert described["thresholds"]["square"] == pytest.approx(
        imgclf.load(model_file).thresholds[1])


def test_the_page_names_the_labels_given(shapes):
    pytest.importorskip("gradio", reason="needs the serve extra")
    import imgclf
    from imgclf.serve.gradio_app import classify, describe

    _, _, _, model_file, new = shapes
    model = imgclf.load(model_file)
    update = classify(model, str(list(new)[1]))
    assert update["label"].startswith("Labels: ") and set(update["value"]) == set(SHAPES)
    assert "any number per picture" in describe(model) and "labels right at 0.5" in describe(model)
    assert classify(model, None)["label"] == "Prediction"  # a cleared picture resets the title


def test_fine_tuning_with_binary_cross_entropy_validates_as_evaluate_does(shapes, tmp_path):
    """The loss and accuracy training prints for a whole-network epoch (its frozen early
    layers stored, frozen.py) are evaluate's, so the sigmoid is used on every path."""
    from imgclf import Learner, TrainConfig
    from imgclf.model import Classifier

    _, _, data, _, _ = shapes
    network = Classifier.create(data.backbone, len(data.classes))  # built without being told
    network.freeze()
    learner = Learner(data, network, config=TrainConfig(freeze_early=True, seed=1),
                      verbose=False, output=tmp_path / "run")
    assert learner.network.multi_label  # the data says what its scores mean
    learner.fine_tune(1, freeze_epochs=1)
    assert learner.network.frozen_start() > 0
    last = learner.history[-1]
    assert last["phase"] == "all"
    evaluation = learner.evaluate()
    assert last["valid_loss"] == pytest.approx(evaluation.loss, abs=1e-5)
    assert last["accuracy"] == pytest.approx(evaluation.accuracy)
    thresholds = learner.info().thresholds
    assert len(thresholds) == 3 and thresholds != (0.5, 0.5, 0.5)  # chosen, not the default
    # resuming the finished run writes its model file again, with the same thresholds
    # chosen again on the same validation pictures (not 0.5 each for want of them)
    import imgclf

    assert Learner.resume(tmp_path / "run", data, verbose=False).thresholds == thresholds
    assert imgclf.load(tmp_path / "run" / "model.imgclf").info.thresholds == thresholds


def test_the_command_line_trains_evaluates_and_predicts_several_labels(tmp_path):
    table, rows = shapes_csv(tmp_path / "data", count=60, seed=3, delimiter=";")
    import os

    run = [sys.executable, "-m", "imgclf"]
    trained = subprocess.run(
        [*run, "train", str(table), "--label-delim", ";", "--mode", "probe", "--image-size",
         "96", "--out", str(tmp_path / "model")], capture_output=True, text=True,
        env={**os.environ, "COLUMNS": "200"})
    assert trained.returncode == 0, trained.stderr
    assert "3 labels, pictures with each" in trained.stderr
    evaluated = subprocess.run([*run, "evaluate", str(tmp_path / "model"), str(table), "--json"],
                               capture_output=True, text=True)
    assert evaluated.returncode == 0, evaluated.stderr
    summary = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert summary["multi_label"] and summary["mean_average_precision"] > 0.8
    predicted = subprocess.run(
        [*run, "predict", str(tmp_path / "model"), str(tmp_path / "data" / "0.png"), "--json",
         "--threshold", "circle=0", "--threshold", "square=0",
         "--threshold", "triangle=0"], capture_output=True, text=True)
    assert predicted.returncode == 0, predicted.stderr
    answer = json.loads(predicted.stdout.strip().splitlines()[-1])
    assert answer["unknown"] or answer["labels"] == sorted(SHAPES)
    wrong = subprocess.run([*run, "predict", str(tmp_path / "model"),
                            str(tmp_path / "data" / "0.png"), "--threshold", "high"],
                           capture_output=True, text=True)
    assert wrong.returncode != 0 and "--threshold takes P or LABEL=P" in wrong.stderr
    folder = subprocess.run([*run, "train", str(tmp_path / "data"), "--label-delim", ";"],
                            capture_output=True, text=True)
    assert folder.returncode != 0 and "is not a .csv file" in folder.stderr


def test_cleaning_finds_wrong_label_sets_and_off_topic_pictures(tmp_path):
    """Some pictures' label sets are damaged (a shape dropped or one added), and pictures of
    none of the kind (smooth gradients) are planted: find_issues names the damaged pictures
    with their true set as the suggestion, the planted ones as off-topic, and --auto's
    corrected CSV writes the suggested sets with the CSV's own separator."""
    pytest.importorskip("cleanlab")
    from imgclf import ImageData
    from imgclf.cleaning.finding import find_issues
    from imgclf.cleaning.fixes import correct_csv

    table, rows = shapes_csv(tmp_path / "data", count=150, seed=5, delimiter=";")
    generator = np.random.default_rng(1)
    damaged = {}
    for index in generator.choice(len(rows), 10, replace=False):
        name, cell = rows[index]
        present = set(filter(None, cell.split(";")))
        shape = sorted(SHAPES)[int(generator.integers(3))]
        present ^= {shape}  # dropped if it is there, added if not
        damaged[name] = cell
        rows[index] = (name, ";".join(sorted(present)))
    for index in range(4):
        ramp = np.linspace(20 + 40 * index, 235, SIDE).astype("uint8")
        Image.fromarray(np.stack([np.tile(ramp, (SIDE, 1)), np.tile(ramp[:, None], (1, SIDE)),
                                  np.full((SIDE, SIDE), 60 * index, "uint8")], axis=2)).save(
            tmp_path / "data" / f"gradient{index}.png")
        rows.append((f"gradient{index}.png", "circle"))
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows(rows)
    data = ImageData.from_csv(table, label_delim=";", image_size=128, num_workers=0,
                              verbose=False)
    issues = find_issues(data, show_progress=False)
    off_topic = {issue.path.name for issue in issues.of_kind("off_topic")}
    assert {f"gradient{index}.png" for index in range(4)} <= off_topic
    found = {issue.path.name: issue for issue in issues.of_kind("label")}
    caught = [name for name in damaged if name in found]
    assert len(caught) >= 7  # of 10 damaged sets
    right = [name for name in caught if (found[name].suggested or "") == damaged[name]]
    assert len(right) >= 0.8 * len(caught)
    assert len(found) <= len(caught) + 5  # few clean pictures accused
    sample = found[caught[0]]
    assert ";" in sample.label or sample.label in SHAPES or sample.label == ""
    decisions = issues.auto_decisions()
    corrected = correct_csv(table, decisions)
    with open(corrected, newline="") as handle:
        cells = {row["path"]: row["label"] for row in csv.DictReader(handle)}
    fixed = [name for name in damaged if cells.get(name) == damaged[name]]
    assert len(fixed) >= 5
    assert not any(f"gradient{index}.png" in cells for index in range(4))  # removed


def test_cleaning_copes_with_a_label_on_every_picture():
    """cleanlab refuses a label never absent; screening leaves that label to the probe and
    still finds the flipped ones of the others."""
    pytest.importorskip("cleanlab")
    from imgclf.cleaning.finding import screen

    generator = np.random.default_rng(3)
    targets = (generator.random((160, 3)) < 0.4).astype(np.float32)
    targets[:, 2] = 1  # on every picture
    features = generator.normal(size=(160, 256)).astype(np.float32)
    for label in range(3):  # each label moves its own 64 features, as embeddings spread it
        features[:, 64 * label:64 * (label + 1)] += 1.5 * targets[:, label:label + 1]
    flipped = generator.choice(160, 6, replace=False)
    given = targets.copy()
    given[flipped, 0] = 1 - given[flipped, 0]
    found = screen(features, given, 3, seed=0)
    assert found.probabilities.shape == (160, 3)
    assert set(flipped) <= set(np.flatnonzero(found.mislabelled))
    assert found.mislabelled.sum() <= len(flipped) + 2
    assert (found.probabilities[:, 2] > 0.5).all()  # the constant label, never doubted


def test_the_numpy_sigmoid_matches_torch_far_from_zero():
    import torch

    from imgclf.inference.graphs import sigmoid

    scores = np.array([[-40.0, -17.0, -3.0, 0.0, 3.0, 17.0, 40.0]], dtype=np.float32)
    expected = torch.sigmoid(torch.from_numpy(scores)).numpy()
    assert np.allclose(sigmoid(scores), expected, rtol=1e-6, atol=0)
    assert sigmoid(scores).dtype == np.float32


def test_a_predictions_table_row_carries_the_labels(shapes):
    """--csv and Ray's Parquet write one row per picture: the labels joined by ";" and every
    label's probability."""
    import imgclf
    from imgclf.inference.prediction import table_row

    _, _, _, model_file, new = shapes
    model = imgclf.load(model_file)
    path = list(new)[3]
    prediction = model.predict(path)
    row = table_row(model.classes, path, prediction)
    assert row["label"] == prediction.label and (prediction.unknown or ";" in row["label"])
    assert [row[name] for name in model.classes] == [prediction.probabilities[name]
                                                     for name in model.classes]


def test_an_explanation_names_the_nearest_pictures_labels(shapes):
    import imgclf

    _, rows, _, model_file, new = shapes
    sets = {cell.replace(" ", ";") or "-" for _, cell in rows}
    explanation = imgclf.load(model_file).explain(list(new)[3])
    assert explanation.nearest and all(n.label in sets for n in explanation.nearest)
    assert any(";" in n.label for n in explanation.nearest)  # several shapes, several labels


def test_a_dataframe_with_missing_labels_reads_them_as_empty(tmp_path, make_photo):
    pandas = pytest.importorskip("pandas")
    from imgclf.data.sources import items_from_dataframe

    frame = pandas.DataFrame({"path": ["a.jpg", "b.jpg", "c.jpg"],
                              "label": ["car person", None, float("nan")]}).convert_dtypes()
    items = items_from_dataframe(frame, root=tmp_path, label_delim=" ")
    assert [item.label for item in items] == [("car", "person"), (), ()]
    single = items_from_dataframe(frame, root=tmp_path)
    assert [item.label for item in single] == ["car person", None, None]


def test_int8_is_checked_on_whole_label_sets_and_gives_the_same_sets(shapes):
    """quantize compares float and int8 by the validation pictures' exact matches at the
    model's thresholds, with sigmoid outputs; the int8 model then gives sets too."""
    pytest.importorskip("onnxruntime", reason="needs the onnx extra")
    import imgclf

    _, _, data, model_file, new = shapes
    check = imgclf.quantize(model_file, data, show_progress=False)
    assert check.pictures == len(data.valid)
    assert check.float_accuracy == pytest.approx(imgclf.evaluate(
        imgclf.load(model_file), data, show_progress=False).exact_match)
    if not check.accepted:
        pytest.skip(f"int8 refused here: {check.reason}")
    fast, plain = imgclf.load(model_file, int8=True), imgclf.load(model_file)
    assert fast.multi_label and fast.runtime == "int8"
    same = [fast.predict(path).labels == plain.predict(path).labels for path in new]
    assert sum(same) >= len(new) - 1
