"""The unknown answer on generated pictures: circles and squares are trained; noise, flat
colours and stripes come back "unknown", while circles and squares are still accepted at about
the chosen rate, through Predictor, the CLI, evaluate, the HTTP API and ONNX."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imgclf import ImageData, Predictor, evaluate, load, train
from imgclf.cli import main
from imgclf.config import DEFAULT_ACCEPTANCE
from imgclf.errors import ImgclfWarning

SIZE = 96


def _shape(path, kind: str, seed: int) -> None:
    generator = np.random.default_rng(seed)
    background = tuple(int(v) for v in generator.integers(150, 256, 3))
    colour = tuple(int(v) for v in generator.integers(0, 110, 3))
    picture = Image.new("RGB", (SIZE, SIZE), background)
    draw = ImageDraw.Draw(picture)
    radius = int(generator.integers(18, 34))
    x, y = (int(v) for v in generator.integers(radius + 2, SIZE - radius - 2, 2))
    box = (x - radius, y - radius, x + radius, y + radius)
    draw.ellipse(box, fill=colour) if kind == "circles" else draw.rectangle(box, fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, quality=92)


def _strangers(folder, count: int = 12) -> list:
    """Pictures of neither shape: uniform noise, flat colours and stripes."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(7)
    paths = []
    for index in range(count):
        kind = ("noise", "flat", "stripes")[index % 3]
        if kind == "noise":
            pixels = generator.integers(0, 256, (SIZE, SIZE, 3))
        elif kind == "flat":
            pixels = np.broadcast_to(generator.integers(0, 256, 3), (SIZE, SIZE, 3))
        else:
            pixels = np.zeros((SIZE, SIZE, 3)) + ((np.arange(SIZE) // 6) % 2)[:, None, None] * 255
        path = folder / f"{kind}_{index}.png"
        Image.fromarray(np.ascontiguousarray(pixels).astype("uint8")).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """(data folder, strangers folder, trained probe model file)."""
    root = tmp_path_factory.mktemp("shapes")
    for kind in ("circles", "squares"):
        for index in range(30):
            _shape(root / "data" / kind / f"{index}.jpg", kind, index + 1000 * (kind == "squares"))
    _strangers(root / "strangers")
    data = ImageData.from_folder(root / "data", image_size=SIZE, num_workers=0, verbose=False)
    train(data, mode="probe", output=root / "model", verbose=False)
    return root / "data", root / "strangers", root / "model" / "model.imgclf"


def test_strangers_are_unknown_and_the_classes_are_accepted(shapes):
    data_folder, strangers, model = shapes
    predictor = load(model)
    # 12 validation pictures are too few alone: the training pictures' scores count too
    assert predictor.has_detector
    assert predictor.info.unknown.calibrated_on == "valid + train (left out)"
    answers = predictor.predict_batch(sorted(strangers.iterdir()), show_progress=False)
    assert all(answer.unknown and answer.label == "unknown" for answer in answers)
    assert all(answer.closest in ("circles", "squares") for answer in answers)
    shapes_seen = predictor.predict_batch(sorted(data_folder.glob("*/*.jpg")),
                                          show_progress=False)
    accepted = np.mean([not answer.unknown for answer in shapes_seen])
    assert accepted >= 0.85  # 0.98 of the calibration pictures, about as many of the rest
    for answer in shapes_seen:
        assert answer.outlier_score is not None
        assert answer.label == ("unknown" if answer.unknown else answer.closest)


def test_acceptance_moves_the_threshold_at_load_time(shapes):
    _, _, model = shapes
    strict, lenient = Predictor.load(model, acceptance=0.5), Predictor.load(model, acceptance=1.0)
    assert strict.threshold < load(model).threshold <= lenient.threshold
    assert lenient.acceptance == 1.0
    # 12 validation and 48 training scores: at 99.9% none would lie above the threshold
    with pytest.warns(ImgclfWarning, match="too few to place it"):
        Predictor.load(model, acceptance=0.999)


def test_evaluate_reports_the_unknown_answer(shapes, tmp_path):
    data_folder, strangers, model = shapes
    data = ImageData.from_folder(data_folder, image_size=SIZE, num_workers=0, verbose=False)
    evaluation = evaluate(load(model), data, unknown=strangers, show_progress=False)
    summary = evaluation.summary()
    assert summary["strangers"] == 12 and summary["strangers_flagged"] == 1.0
    assert summary["unknown_auroc"] > 0.99 and summary["acceptance"] >= 0.9
    assert summary["accepted_accuracy"] >= summary["accuracy"] - 1e-9
    html = evaluation.report(tmp_path / "report.html", data=data).read_text()
    assert "Unknown pictures" in html and "called unknown" in html


def test_cli_says_unknown_and_names_the_closest_class(shapes, tmp_path, capsys):
    data_folder, strangers, model = shapes
    noise = strangers / "noise_0.png"
    assert main(["predict", str(model), str(noise)]) == 0
    line = capsys.readouterr().out.strip()
    assert "\tunknown (closest: " in line
    assert main(["predict", str(model), str(noise), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["unknown"] is True and row["label"] == "unknown" and row["outlier_score"] > 0
    assert main(["predict", str(model), str(noise), "--csv", str(tmp_path / "p.csv")]) == 0
    header, values = (tmp_path / "p.csv").read_text().splitlines()
    assert header.startswith("path,label,index,probability,unknown,outlier_score")
    assert values.split(",")[1] == "unknown" and values.split(",")[4] == "1"
    assert main(["evaluate", str(model), str(data_folder), "--unknown", str(strangers)]) == 0
    assert "12 pictures in" in capsys.readouterr().out


def test_the_http_api_answers_unknown(shapes):
    pytest.importorskip("fastapi", reason="needs the serve extra")
    import httpx

    from imgclf.serve.http import create_app
    from tests.serving import running

    data_folder, strangers, model = shapes
    with running(create_app(model, with_gradio=False)) as url:
        stranger = httpx.post(f"{url}/predict", content=(strangers / "noise_0.png").read_bytes(),
                              timeout=60).json()
        circle = httpx.post(f"{url}/predict", content=(data_folder / "circles" / "0.jpg")
                            .read_bytes(), timeout=60).json()
        described = httpx.get(f"{url}/model", timeout=60).json()
    assert stranger["unknown"] is True and stranger["label"] == "unknown"
    assert circle["label"] in ("circles", "unknown") and "outlier_score" in circle
    assert described["unknown"]["acceptance"] == DEFAULT_ACCEPTANCE


def test_onnx_computes_the_same_outlier_score(shapes, tmp_path):
    pytest.importorskip("onnxruntime", reason="needs the onnx extra")
    from imgclf.inference.onnx_export import export_onnx

    data_folder, strangers, model = shapes
    copy = tmp_path / "m.imgclf"
    copy.write_bytes(model.read_bytes())
    result = export_onnx(copy, tmp_path / "m.onnx", check_images=sorted(
        data_folder.glob("*/*.jpg"))[:4] + sorted(strangers.iterdir())[:2])
    assert result["max_difference"] <= 1e-4
    pictures = sorted(strangers.iterdir()) + sorted(data_folder.glob("*/*.jpg"))[:8]
    expected = load(copy, runtime="torch").predict_batch(pictures, show_progress=False)
    for onnx in (Predictor.load(tmp_path / "m.onnx"), Predictor.load(copy, runtime="onnx")):
        answers = onnx.predict_batch(pictures, show_progress=False)
        assert [a.unknown for a in answers] == [e.unknown for e in expected]
        assert np.allclose([a.outlier_score for a in answers],
                           [e.outlier_score for e in expected], atol=1e-4)


def test_fine_tuned_models_get_a_detector_too(shapes, tmp_path):
    data_folder, strangers, _ = shapes
    data = ImageData.from_folder(data_folder, image_size=SIZE, batch_size=8, num_workers=0,
                                 verbose=False)
    learner = train(data, mode="fine_tune", epochs=1, freeze_epochs=1, verbose=False)
    assert learner.unknown is not None and learner.history[-1]["backbone_trained"]
    answers = learner.predictor().predict_batch(sorted(strangers.iterdir()), show_progress=False)
    assert np.mean([answer.unknown for answer in answers]) >= 0.9


def test_without_a_validation_split_the_threshold_comes_from_the_training_pictures(shapes):
    data_folder, strangers, _ = shapes
    data = ImageData.from_folder(data_folder, image_size=SIZE, valid_fraction=0,
                                 num_workers=0, verbose=False)
    learner = train(data, mode="probe", verbose=False)
    assert learner.unknown.calibrated_on == "train (left out)"
    answers = learner.predictor().predict_batch(sorted(strangers.iterdir()), show_progress=False)
    assert all(answer.unknown for answer in answers)


def test_an_unknown_folder_tunes_the_detector_and_is_no_class(shapes, tmp_path, capsys):
    import shutil

    data_folder, strangers, _ = shapes
    shutil.copytree(data_folder, tmp_path / "data")
    _strangers(tmp_path / "data" / "_unknown", count=6)  # noise, flat colours, stripes
    data = ImageData.from_folder(tmp_path / "data", image_size=SIZE, num_workers=0,
                                 verbose=False)
    assert data.classes == ["circles", "squares"] and len(data.negatives) == 6
    learner = train(data, mode="probe", verbose=False)
    unknown = learner.unknown
    assert unknown.negatives == 6 and unknown.negatives_flagged == 1.0
    assert (unknown.k, unknown.softmax_weight) in [(k, w) for k in (1, 5, 10, 20)
                                                  for w in (0.0, 0.2, 0.5)]
    answers = learner.predictor().predict_batch(sorted(strangers.iterdir()), show_progress=False)
    assert all(answer.unknown for answer in answers)
    # the same from the command line, with the folder given apart
    shutil.move(tmp_path / "data" / "_unknown", tmp_path / "others")
    assert main(["train", str(tmp_path / "data"), "--mode", "probe", "--image-size", str(SIZE),
                 "--unknown-folder", str(tmp_path / "others"), "--out", str(tmp_path / "m")]) == 0
    assert "the _unknown folder: 6 pictures" in " ".join(capsys.readouterr().err.split())
    assert load(tmp_path / "m" / "model.imgclf").info.unknown.negatives == 6


def test_the_bank_keeps_every_class_and_lone_pictures_do_not_loosen_the_threshold():
    import torch

    from imgclf.unknown import MAX_BANK, _sample, fit_detector

    targets = torch.cat([torch.zeros(10_000, dtype=torch.long), torch.ones(5, dtype=torch.long)])
    kept = _sample(targets, MAX_BANK, seed=42)
    assert len(kept) <= MAX_BANK + 5 and int((targets[kept] == 1).sum()) == 5
    # classes of 8, 8, 1 and 1 training pictures and 8 validation pictures: the two lone
    # pictures have no neighbour of their class once left out, and must not set the threshold
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 32, generator=generator) * 5
    labels = torch.tensor([0] * 8 + [1] * 8 + [2, 3])
    train = centres[labels] + torch.randn(len(labels), 32, generator=generator) * 0.1
    valid = centres[torch.tensor([0, 1] * 4)] + torch.randn(8, 32, generator=generator) * 0.1
    head = torch.nn.Linear(32, 4)
    with torch.no_grad():
        head.weight.copy_(centres)
        head.bias.zero_()
    detector, config = fit_detector(train, labels, head, valid=valid)
    assert config.calibrated_on == "valid + train (left out)" and config.threshold < 0.5
    strangers = torch.randn(5, 32, generator=generator) * 5
    assert (detector(head(strangers), strangers) > config.threshold).all()


def test_too_few_validation_pictures_beyond_the_threshold_bring_in_the_training_ones():
    import torch

    from imgclf.calibration import MIN_BEYOND, too_few_beyond
    from imgclf.unknown import fit_detector

    # the threshold at 98% of 153 validation pictures has 2 above it: too few to place it
    assert too_few_beyond(153, 0.98) and not too_few_beyond(480, 0.98)
    assert not too_few_beyond(153, 0.95) and too_few_beyond(99, 0.95)
    # the conformal threshold leaves n - ceil((n + 1) x 0.98) above it: 5 from 299 pictures
    assert not too_few_beyond(299, 0.98) and too_few_beyond(298, 0.98) and MIN_BEYOND == 5
    generator = torch.Generator().manual_seed(1)
    centres = torch.randn(2, 16, generator=generator) * 5
    labels = torch.tensor([0, 1] * 60)
    train = centres[labels] + torch.randn(len(labels), 16, generator=generator)
    valid = centres[torch.tensor([0, 1] * 100)] + torch.randn(200, 16, generator=generator)
    head = torch.nn.Linear(16, 2)
    with torch.no_grad():
        head.weight.copy_(centres)
        head.bias.zero_()
    more_valid = centres[torch.tensor([0, 1] * 50)] + torch.randn(100, 16, generator=generator)
    scored = {}
    for acceptance in (0.95, 0.98):
        for pictures in (valid, torch.cat([valid, more_valid])):
            detector, config = fit_detector(train, labels, head, valid=pictures,
                                            acceptance=acceptance)
            scored[acceptance, len(pictures)] = (config.calibrated_on, len(detector.calibration))
    # 300 validation pictures: 5 above the threshold at 98%, enough
    assert scored[0.98, 300] == scored[0.95, 300] == ("valid", 300)
    # 200: 3 would be, so the 120 training pictures' scores count too, also for a model trained
    # at 95% (9 above), which is loaded at the default 98% unless told otherwise
    assert scored[0.98, 200] == scored[0.95, 200] == ("valid + train (left out)", 320)


def test_the_threshold_accepts_at_least_the_share_asked_of_new_in_domain_pictures():
    """A split-conformal quantile: a new picture scored like the calibration pictures is
    accepted with probability at least the acceptance, and not by more than one score in
    n + 1 (np.quantile's interpolation fell short: 0.86 of 0.9 with 19 scores)."""
    from imgclf.calibration import scores_beyond, threshold_for

    for n, acceptance in ((19, 0.9), (60, 0.95), (153, 0.98), (373, 0.98), (420, 0.98),
                          (20, 0.95), (100, 0.55), (10, 1.0), (19, 0.98)):
        # distinct scores: a new one is equally likely to fall in each of the n + 1 gaps, so
        # the threshold's rank k among the n gives exactly k / (n + 1)
        scores = np.random.default_rng(n).permutation(n) * 0.5
        rank = int(threshold_for(scores, acceptance) / 0.5) + 1
        assert rank / (n + 1) >= acceptance or rank == n, (n, acceptance)
        assert (rank - 1) / (n + 1) < acceptance, (n, acceptance)  # the smallest such rank
        assert scores_beyond(n, acceptance) == n - rank
    # too few scores for the rank asked: the largest, which accepts n / (n + 1)
    assert threshold_for(np.arange(19.0), 0.98) == 18 and scores_beyond(19, 0.98) == 0
    assert scores_beyond(0, 0.98) == 0 and threshold_for([], 0.98) == float("inf")
    # and by drawing: 4,000 sets of 19 calibration scores and one new score each
    draws = np.random.default_rng(0).normal(size=(4000, 20))
    thresholds = np.array([threshold_for(row[:19], 0.9) for row in draws])
    assert (draws[:, 19] <= thresholds).mean() >= 0.89


def test_pictures_anywhere_under_an_unknown_folder_are_no_class(shapes, tmp_path):
    import shutil

    data_folder, _, _ = shapes
    shutil.copytree(data_folder, tmp_path / "data")
    _strangers(tmp_path / "data" / "_unknown" / "cars", count=3)
    data = ImageData.from_folder(tmp_path / "data", image_size=SIZE, num_workers=0,
                                 verbose=False)
    assert data.classes == ["circles", "squares"] and len(data.negatives) == 3


def test_predict_with_no_readable_picture_says_so_and_fails(shapes, tmp_path, capsys):
    _, _, model = shapes
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert main(["predict", str(model), str(tmp_path / "empty.jpg")]) == 1
    err = capsys.readouterr().err
    assert "empty file (0 bytes)" in err and "No picture could be read" in err
