"""Evaluation figures on a constructed case whose answers are known, and the HTML report."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from imgclf import Evaluation, ImageData, evaluate, train
from imgclf.cli import main
from imgclf.plots import confused_subset, plot_confusion_matrix


@pytest.fixture
def known():
    """Six pictures of cat/dog/fox with probabilities chosen by hand.

    actual:    cat  cat  dog  dog  fox  fox
    predicted: cat  dog  dog  dog  cat  fox
    """
    probabilities = [
        [0.8, 0.1, 0.1],   # cat, right
        [0.3, 0.6, 0.1],   # cat taken for dog
        [0.1, 0.7, 0.2],   # dog, right
        [0.2, 0.5, 0.3],   # dog, right
        [0.5, 0.1, 0.4],   # fox taken for cat
        [0.1, 0.1, 0.8],   # fox, right
    ]
    return Evaluation(classes=["cat", "dog", "fox"],
                      paths=[Path(f"{i}.jpg") for i in range(6)],
                      targets=[0, 0, 1, 1, 2, 2], probabilities=probabilities)


def test_accuracy_and_confusion_matrix(known):
    assert known.accuracy == pytest.approx(4 / 6)
    assert known.error_rate == pytest.approx(2 / 6)
    assert known.confusion_matrix().tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert known.confusion_matrix(normalize=True)[2].tolist() == [0.5, 0.0, 0.5]


def test_losses_are_the_negative_log_of_the_true_class(known):
    expected = [-math.log(p) for p in (0.8, 0.3, 0.7, 0.5, 0.4, 0.8)]
    assert known.losses.tolist() == pytest.approx(expected)
    assert known.loss == pytest.approx(sum(expected) / 6)


def test_per_class_precision_recall_f1(known):
    rows = {row["class"]: row for row in known.per_class()}
    # cat: predicted 2 times (1 right) -> precision 1/2; 2 real cats, 1 found -> recall 1/2
    assert (rows["cat"]["precision"], rows["cat"]["recall"]) == (0.5, 0.5)
    # dog: predicted 3 times (2 right) -> 2/3; both dogs found -> recall 1
    assert rows["dog"]["precision"] == pytest.approx(2 / 3) and rows["dog"]["recall"] == 1.0
    assert rows["dog"]["f1"] == pytest.approx(0.8)
    assert rows["fox"] == {"class": "fox", "precision": 1.0, "recall": 0.5,
                           "f1": pytest.approx(2 / 3), "support": 2}
    assert known.macro_f1 == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_most_confused_and_top_losses(known):
    assert known.most_confused() == [("cat", "dog", 1), ("fox", "cat", 1)]
    assert known.most_confused(min_count=2) == []
    worst = known.top_losses(2)
    assert [(w.path.name, w.actual, w.predicted) for w in worst] == [
        ("1.jpg", "cat", "dog"), ("4.jpg", "fox", "cat")]
    assert worst[0].loss == pytest.approx(-math.log(0.3)) and worst[0].probability == 0.6


def test_many_classes_show_the_most_confused_sub_matrix():
    matrix = np.diag(np.full(120, 10))
    matrix[5, 77] = 4
    matrix[77, 5] = 2
    matrix[30, 31] = 1
    keep = confused_subset(matrix, max_classes=3)
    assert keep == [5, 30, 77] or keep == [5, 31, 77]
    assert set(confused_subset(matrix, max_classes=2)) == {5, 77}


def test_the_sub_matrix_shows_the_most_confused_pairs_whole():
    # 120 breeds: a few busy classes each in many one-off mistakes, and ten strong pairs
    # (7 to 3 mistakes) between otherwise clean classes, as a 120-breed evaluation had
    rng = np.random.default_rng(0)
    matrix = np.diag(np.full(120, 20))
    for busy in range(100, 120):
        for other in rng.choice(100, 12, replace=False):
            matrix[busy, other] += 1
            matrix[other, busy] += 1
    strong = [(59, 58, 7), (12, 13, 6), (40, 41, 6), (70, 71, 5), (2, 3, 5), (80, 81, 4),
              (20, 21, 4), (90, 91, 4), (30, 31, 3), (50, 51, 3)]
    for actual, predicted, count in strong:
        matrix[actual, predicted] += count
    classes = [f"breed_{i:03d}" for i in range(120)]
    keep = set(confused_subset(matrix, max_classes=20))
    top = sorted(((a, p, int(matrix[a, p])) for a in range(120) for p in range(120)
                  if a != p and matrix[a, p]), key=lambda t: (-t[2], t[0], t[1]))[:10]
    assert all(a in keep and p in keep for a, p, _ in top)  # every top-10 pair, whole
    assert {59, 58} <= keep
    figure = plot_confusion_matrix(matrix, classes, max_classes=20)
    assert "breed_059" in [t.get_text() for t in figure.axes[0].get_yticklabels()]


def test_plots_are_drawn_from_the_data(known):
    figure = known.plot_confusion_matrix()
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert texts == ["1", "1", "0", "0", "2", "0", "1", "0", "1"]
    classes = [f"c{i}" for i in range(50)]
    targets = np.repeat(np.arange(50), 2)
    probabilities = np.eye(50)[targets] * 0.9 + 0.002
    probabilities[0] = np.eye(50)[7] * 0.9 + 0.002
    many = Evaluation(classes, [Path(f"{i}.jpg") for i in range(100)], targets, probabilities)
    title = many.plot_confusion_matrix(max_classes=10).axes[0].get_title()
    assert "10 most-confused of 50 classes" in title


def test_the_per_class_table_leads_with_the_weakest_classes():
    from imgclf.evaluation.report import _per_class_table

    classes = [f"c{i:02d}" for i in range(30)]
    targets = np.repeat(np.arange(30), 4)
    probabilities = np.eye(30)[targets] * 0.9 + 0.002
    for row, wrong in ((4, 9), (5, 9), (6, 9), (60, 0)):  # c01 half wrong, c15 a quarter
        probabilities[row] = np.eye(30)[wrong] * 0.9 + 0.002
    evaluation = Evaluation(classes, [Path(f"{i}.jpg") for i in range(120)], targets,
                            probabilities)
    table = _per_class_table(evaluation)
    order = [name for name in classes if f"<td>{name}</td>" in table]
    assert sorted(order, key=lambda name: table.index(f"<td>{name}</td>"))[:3] == [
        "c01", "c09", "c15"]  # lowest F1 first (c09 takes c01's pictures)
    assert "weakest first" in table


def test_evaluate_and_report_on_generated_photos(colours, tmp_path):
    (tmp_path / "colours" / "red" / "broken.jpg").write_bytes(b"")
    data = ImageData.from_folder(tmp_path / "colours", image_size=64, batch_size=8,
                                 num_workers=0, verbose=False)
    learner = train(data, mode="fine_tune", epochs=1, freeze_epochs=3, verbose=False)
    evaluation = learner.evaluate()
    assert len(evaluation.targets) == len(data.valid)
    assert evaluation.accuracy == pytest.approx(learner.history[-1]["accuracy"], abs=0.2)
    with_tta = evaluate(learner, data, tta=True, show_progress=False)
    assert not np.allclose(with_tta.probabilities, evaluation.probabilities)

    report = evaluation.report(tmp_path / "report.html", data=data)
    text = report.read_text()
    for section in ("Confusion matrix", "Most confused", "Top losses", "Per class", "Training",
                    "Data", "Skipped files: 1", "broken.jpg"):
        assert section in text, section
    assert not re.search(r"""(src|href)=['"]?https?:""", text)  # nothing fetched from outside
    assert text.count("data:image/png;base64,") >= 4
    top_losses = text.split("<h2>Per class")[0]  # the unknown section has thumbnails too
    assert top_losses.count("<div class=tile>") == min(12, len(data.valid))
    # each with its heat and its 3 nearest training pictures, labelled
    assert top_losses.count("<div class=near>") == min(12, len(data.valid))
    assert top_losses.count("data:image/jpeg;base64,") == 4 * min(12, len(data.valid))
    assert re.search(r"nearest: (red|blue) 0\.\d\d, (red|blue) 0\.\d\d", top_losses)


def test_a_probes_evaluate_runs_its_head_on_the_cached_embeddings(colours, tmp_path,
                                                                   monkeypatch):
    from imgclf import Learner
    from imgclf.inference import loop

    data = ImageData.from_folder(tmp_path / "colours", image_size=64, num_workers=0,
                                 verbose=False)
    learner = train(data, mode="probe", verbose=False)
    through_the_network = evaluate(learner, data, show_progress=False)
    passes = []
    run = loop.run
    monkeypatch.setattr(loop, "run", lambda *args, **options: passes.append(1) or run(
        *args, **options))

    def no_network(*args, **options):
        raise AssertionError("the backbone ran: the cached embeddings were not used")

    with monkeypatch.context() as patch:
        patch.setattr("imgclf.training.embeddings.accelerated", no_network)
        cached = learner.evaluate()
    assert not passes  # no pass of the network over the pictures
    assert cached.paths == through_the_network.paths and len(cached.paths) == len(data.valid)
    assert list(cached.targets) == list(through_the_network.targets)
    np.testing.assert_allclose(cached.probabilities, through_the_network.probabilities,
                               atol=1e-5)
    assert cached.outlier_scores is not None
    np.testing.assert_allclose(cached.outlier_scores, through_the_network.outlier_scores,
                               atol=1e-4)
    assert cached.summary()["accuracy"] == through_the_network.summary()["accuracy"]
    learner.evaluate(tta=True)  # mirror images are not cached: the network runs
    assert len(passes) == 1
    # a network handed to a Learner may have been trained elsewhere: never the cache
    Learner(data, learner.network, verbose=False).evaluate()
    assert len(passes) == 2


def test_cached_outputs_keep_each_row_with_its_picture(colours, tmp_path, monkeypatch):
    """A picture the embedding pass could not read keeps its place: NaN rows, ok False and
    its reason; the other rows are the head and the detector on their own embeddings."""
    import torch

    from imgclf.errors import ImageError
    from imgclf.training import embeddings
    from imgclf.training.embeddings import Embeddings, cached_outputs

    data = ImageData.from_folder(tmp_path / "colours", image_size=64, num_workers=0,
                                 verbose=False)
    learner = train(data, mode="probe", verbose=False)
    items = data.labelled("valid")
    real = embeddings.compute_embeddings(learner.network, data, "valid", show_progress=False)
    lost = 1  # the second validation picture could not be read
    kept = np.array([row for row in range(len(items)) if row != lost])
    monkeypatch.setattr(embeddings, "compute_embeddings", lambda *args, **options: Embeddings(
        features=real.features[kept], targets=real.targets[kept], groups=kept, computed=1,
        errors=(ImageError(str(items[lost].path), "truncated JPEG"),)))
    outputs = cached_outputs(learner.network, data, "valid", show_progress=False)
    assert outputs.ok.tolist() == [row != lost for row in range(len(items))]
    assert np.isnan(outputs.probabilities[lost]).all() and np.isnan(outputs.outlier[lost])
    assert [(e.source, e.reason) for e in outputs.errors] == [(str(items[lost].path),
                                                               "truncated JPEG")]
    with torch.inference_mode():
        pooled = torch.from_numpy(real.features)
        logits = learner.network.head(pooled)
        expected = logits.softmax(dim=1).numpy()
        scores = learner.network.detector(logits, pooled).numpy()
    np.testing.assert_allclose(outputs.probabilities[kept], expected[kept], atol=1e-6)
    np.testing.assert_allclose(outputs.outlier[kept], scores[kept], atol=1e-6)
    np.testing.assert_array_equal(outputs.embeddings[kept], real.features[kept])


def test_cli_evaluate_writes_the_report(colours, tmp_path, capsys):
    import json

    out = tmp_path / "run"
    assert main(["train", str(tmp_path / "colours"), "--mode", "fine_tune", "--image-size", "64",
                 "--batch-size", "8",
                 "--epochs", "1", "--freeze-epochs", "3", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), str(tmp_path / "colours"), "--image-size", "64",
                 "--report", str(tmp_path / "r.html"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[0])
    assert summary["pictures"] == 4 and summary["split"] == "valid"  # 2 of 12 per class
    assert (tmp_path / "r.html").stat().st_size > 20_000


def test_a_probe_models_report_has_no_one_dot_training_chart(colour_model, tmp_path):
    from imgclf import load

    photos, path = colour_model
    data = ImageData.from_folder(photos, image_size=64, num_workers=0, verbose=False)
    evaluation = evaluate(load(path), data, show_progress=False)
    text = evaluation.report(tmp_path / "probe.html", data=data).read_text()
    training = text.split("<h2>Training</h2>")[1].split("<h2>")[0]
    assert "One probe step" in training and "data:image/png" not in training


EVALUATE_IN_A_NEW_PROCESS = """
import json, sys
from imgclf.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "torch": "torch" in sys.modules, "timm": "timm" in sys.modules}))
"""


def test_imgclf_evaluate_reads_a_model_file_without_torch_or_timm(colour_model):
    """The data is read at the model's input settings and the model runs on onnxruntime:
    importing timm (and torch with it) took 10 s of `imgclf evaluate`'s 19 on a 2-core CPU."""
    import json
    import subprocess
    import sys

    from imgclf import load

    photos, path = colour_model
    predictor = load(path)  # builds and remembers its graph, as a model's first load does
    data = ImageData.from_folder(photos, image_size=64, num_workers=0, verbose=False)
    expected = evaluate(predictor, data, show_progress=False).summary()
    result = subprocess.run([sys.executable, "-c", EVALUATE_IN_A_NEW_PROCESS, "evaluate",
                             str(path), str(photos), "--json"],
                            capture_output=True, text=True, check=True)
    lines = result.stdout.strip().splitlines()
    summary, process = json.loads(lines[0]), json.loads(lines[-1])
    assert process == {"code": 0, "torch": False, "timm": False}
    assert summary["pictures"] == expected["pictures"] == len(data.valid)
    assert summary["accuracy"] == expected["accuracy"]
    assert summary["loss"] == pytest.approx(expected["loss"], abs=1e-6)
