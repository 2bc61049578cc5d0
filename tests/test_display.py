"""In a notebook, imgclf's objects show themselves: HTML tables and figures, not reprs of
arrays; figures appear without pyplot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgclf.errors import ImageError


def evaluation():
    from imgclf.evaluation.metrics import Evaluation

    classes = ["ants", "bees", "wasps"]
    targets = np.array([0, 0, 1, 1, 2, 2, 2])
    probabilities = np.eye(3)[[0, 1, 1, 1, 2, 0, 2]] * 0.8 + 0.2 / 3
    return Evaluation(classes=classes, paths=[Path(f"{i}.jpg") for i in range(7)],
                      targets=targets, probabilities=probabilities,
                      outlier_scores=np.linspace(0, 1, 7), threshold=0.9)


def test_an_evaluation_shows_its_figures_its_matrix_and_its_mistakes():
    shown = evaluation()._repr_html_()
    assert "Evaluation on the valid split" in shown
    assert "71.4%" in shown  # accuracy, 5 of 7
    assert "85.7%" in shown  # accepted: 6 of 7 scores under the threshold
    assert shown.count("<img") == 1 and "<img src='data:image/png;base64," in shown
    assert "<td>ants</td><td>bees</td><td style=text-align:right>1</td>" in shown
    text = repr(evaluation())
    assert text.startswith("Evaluation(3 classes, split='valid', pictures=7, accuracy=0.7143")
    assert len(text) < 400  # no list of paths, no arrays


def test_figures_show_themselves_without_pyplot():
    import subprocess
    import sys

    code = ("import sys; from tests.test_display import evaluation; "
            "png = evaluation().plot_confusion_matrix()._repr_png_(); "
            "print(png[:4] == bytes([137, 80, 78, 71]), len(png) > 2000, "
            "'matplotlib.pyplot' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, cwd=Path(__file__).parents[1])
    assert result.stdout.split() == ["True", "True", "False"], result.stderr[-2000:]


def test_figures_and_evaluations_pickle():
    import pickle

    figure = pickle.loads(pickle.dumps(evaluation().plot_per_class()))
    assert figure._repr_png_().startswith(b"\x89PNG")
    again = pickle.loads(pickle.dumps(evaluation()))
    assert again.accuracy == evaluation().accuracy and again.model is None


def test_a_prediction_shows_its_classes_as_bars():
    from imgclf.inference.prediction import Prediction

    known = Prediction("bees", 1, {"ants": 0.1, "bees": 0.9}, outlier_score=0.2)
    shown = known._repr_html_()
    assert "<b>bees</b>" in shown and "90.0%" in shown and "10.0%" in shown
    assert shown.index("bees") < shown.index("ants")  # likeliest first
    stranger = Prediction("unknown", 1, {"ants": 0.3, "bees": 0.7}, unknown=True,
                          outlier_score=0.8)
    shown = stranger._repr_html_()
    assert "unknown</b>: like none of the classes; closest bees" in shown
    assert "outlier score 0.800" in shown


def test_predictions_of_many_pictures_show_as_one_table():
    from imgclf.inference.prediction import Prediction, Predictions

    answers = Predictions([Prediction("ants", 0, {"ants": 0.8, "bees": 0.2}),
                           ImageError("b.jpg", "not an image: it is an HTML page"),
                           Prediction("unknown", 1, {"ants": 0.4, "bees": 0.6}, unknown=True)],
                          ["a.jpg", "b.jpg", b"\xff\xd8"])
    assert isinstance(answers, list) and len(answers) == 3
    shown = answers._repr_html_()
    assert "3 pictures: 2 predicted (1 unknown), 1 unreadable" in shown
    assert "<td>a.jpg</td><td>ants</td>" in shown
    assert "not an image: it is an HTML page" in shown and "&lt;2 bytes&gt;" in shown


def test_image_data_shows_its_counts(class_folders):
    from imgclf import ImageData

    data = ImageData.from_folder(class_folders, valid_fraction=0.2, seed=0, num_workers=0,
                                 verbose=False)
    shown = data._repr_html_()
    assert "<b>2 classes</b>, 20 pictures" in shown
    assert "<th>class</th><th>train</th><th>valid</th>" in shown
    assert "<td>cats</td><td style=text-align:right>8</td>" in shown


def test_issues_show_their_kinds_surest_first():
    from imgclf.cleaning.finding import Issue, Issues

    issues = Issues([Issue(Path("a/1.jpg"), "label", "ants", "train", 0.6, suggested="bees"),
                     Issue(Path("a/2.jpg"), "off_topic", "ants", "train", 0.9)],
                    ["ants", "bees"], pictures=40, threshold=0.5)
    shown = issues._repr_html_()
    assert "<b>2 issues</b> among 40 pictures: 1 label, 1 off-topic" in shown
    assert shown.index("2.jpg") < shown.index("1.jpg")
    assert repr(issues) == "Issues(2 of 40 pictures: label=1, off_topic=1)"


def test_html_escapes_what_it_shows():
    from imgclf._html import table

    shown = table(("name",), [("<script>alert(1)</script>",)])
    assert "<script>" not in shown and "&lt;script&gt;" in shown
    assert "... and 5 more" in table(("n",), [(i,) for i in range(25)])
