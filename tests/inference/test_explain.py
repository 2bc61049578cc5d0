"""Why an answer: the heatmap lies on the object, the nearest pictures are of the class."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

# The generated pictures' side, and the square's: a fifth of the picture.
SIDE = 160
SQUARE = 72


def square_on_noise(path, generator, *, square: bool = True):
    """Noise, with a yellow square at a random place; returns the square's mask."""
    pixels = generator.integers(0, 255, (SIDE, SIDE, 3)).astype("uint8")
    picture = Image.fromarray(pixels)
    mask = np.zeros((SIDE, SIDE), bool)
    if square:
        left, top = (int(v) for v in generator.integers(0, SIDE - SQUARE, 2))
        ImageDraw.Draw(picture).rectangle((left, top, left + SQUARE - 1, top + SQUARE - 1),
                                          fill=(230, 200, 20))
        mask[top:top + SQUARE, left:left + SQUARE] = True
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return mask


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    """(model file, folder of new square pictures with their masks): a probe that tells a
    square on noise from noise alone, at 224 pixels (a 7 x 7 feature map)."""
    from imgclf import ImageData, train

    root = tmp_path_factory.mktemp("squares")
    generator = np.random.default_rng(0)
    for kind in ("square", "noise"):
        for index in range(12):
            square_on_noise(root / "data" / kind / f"{index}.png", generator,
                            square=kind == "square")
    masks = {}
    for index in range(6):
        path = root / "new" / f"{index}.png"
        masks[path] = square_on_noise(path, generator)
    data = ImageData.from_folder(root / "data", image_size=224, num_workers=0, verbose=False)
    train(data, mode="probe", output=root / "model", verbose=False)
    return root / "model" / "model.imgclf", masks


def test_the_heat_lies_on_the_square(squares):
    """The evidence for "square" is the square: most of the heat lies on it (grown by half a
    cell of the 7 x 7 map the heat comes from), far more than on a box of the same size
    elsewhere, and the hottest point is on it."""
    import imgclf

    model_file, masks = squares
    model = imgclf.load(model_file)
    margin = SIDE // 14  # half a feature cell, at the picture's scale
    on_square, elsewhere = [], []
    for path, mask in masks.items():
        explanation = model.explain(path)
        assert explanation.prediction.label == "square"
        assert explanation.explained == "square"
        assert explanation.heatmap.shape == explanation.picture.shape[:2] == (224, 224)
        assert explanation.heatmap.min() >= 0 and explanation.heatmap.max() == pytest.approx(1)
        heat = np.asarray(Image.fromarray(explanation.heatmap).resize((SIDE, SIDE),
                                                                      Image.BILINEAR))
        rows, columns = np.nonzero(mask)
        grown = np.zeros_like(mask)
        grown[max(0, rows.min() - margin):rows.max() + margin + 1,
              max(0, columns.min() - margin):columns.max() + margin + 1] = True
        on_square.append(heat[grown].sum() / heat.sum())
        # the same box moved to the opposite corner region (as far from the square as fits)
        moved = np.roll(np.roll(grown, SIDE // 2, axis=0), SIDE // 2, axis=1) & ~grown
        elsewhere.append(heat[moved].sum() / heat.sum())
        peak = np.unravel_index(heat.argmax(), heat.shape)
        assert grown[peak], f"{path.name}: the hottest point is off the square"
    assert np.mean(on_square) > 0.5, on_square
    assert np.mean(on_square) > 3 * np.mean(elsewhere), (on_square, elsewhere)


def test_the_nearest_pictures_are_of_the_answer_s_class(squares):
    import imgclf

    model_file, masks = squares
    model = imgclf.load(model_file)
    explanation = model.explain(next(iter(masks)))
    assert len(explanation.nearest) == 4
    assert [n.label for n in explanation.nearest] == ["square"] * 4
    similarities = [n.similarity for n in explanation.nearest]
    assert similarities == sorted(similarities, reverse=True)
    for neighbour in explanation.nearest:  # the files they came from, still at hand
        assert neighbour.at_hand and "/square/" in neighbour.path.replace("\\", "/")
    # a noise picture's nearest are noise pictures
    noise = next(iter(masks)).parent / "plain.png"
    square_on_noise(noise, np.random.default_rng(99), square=False)
    assert {n.label for n in model.explain(noise).nearest} == {"noise"}


def test_the_heat_can_be_for_another_class(squares):
    """Evaluation asks for the evidence of the class it predicted, which may not be the
    closest one now (test-time augmentation): the heat is for the class asked."""
    import imgclf

    model_file, masks = squares
    path = next(iter(masks))
    explanation = imgclf.load(model_file).explain(path, index=0)
    assert explanation.prediction.label == "square" and explanation.explained == "noise"
    closest = imgclf.load(model_file).explain(path)
    assert not np.allclose(explanation.heatmap, closest.heatmap)


def test_an_explanation_draws_and_saves(squares, tmp_path):
    import imgclf

    model_file, masks = squares
    explanation = imgclf.load(model_file).explain(next(iter(masks)))
    png = explanation._repr_png_()
    assert png.startswith(b"\x89PNG")
    saved = explanation.save(tmp_path / "why.png")
    assert Image.open(saved).size[0] > 400


def test_predict_explain_writes_one_picture_per_readable_file(squares, tmp_path):
    model_file, masks = squares
    paths = [str(p) for p in list(masks)[:2]]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a picture")
    out = tmp_path / "why"
    run = subprocess.run([sys.executable, "-m", "imgclf", "predict", str(model_file), *paths,
                          str(broken), "--json", "--explain", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [row.get("label") for row in rows[:2]] == ["square", "square"]
    assert sorted(p.name for p in out.iterdir()) == ["0.png", "1.png"]
    assert "Wrote 2 explanation(s)" in run.stderr


def test_explaining_an_onnx_file_says_what_to_load(squares, tmp_path):
    import imgclf
    from imgclf.errors import ModelFileError

    model_file, masks = squares
    onnx = tmp_path / "model.onnx"
    subprocess.run([sys.executable, "-m", "imgclf", "export", str(model_file), "--onnx",
                    str(onnx)], check=True, capture_output=True, timeout=300)
    with pytest.raises(ModelFileError, match="imgclf model file"):
        imgclf.load(onnx).explain(next(iter(masks)))


def test_a_model_file_from_before_bank_pictures_explains_without_paths(squares, tmp_path):
    """Older files name no bank pictures: the neighbours come with labels, not files."""
    import dataclasses

    from imgclf.modelfile import load_model, save_model
    from imgclf.inference.predictor import Predictor

    model_file, masks = squares
    tensors, info = load_model(model_file)
    old = save_model(tmp_path / "old.imgclf", tensors,
                     dataclasses.replace(info, bank_pictures=()))
    explanation = Predictor.load(old, runtime="torch").explain(next(iter(masks)))
    assert [n.label for n in explanation.nearest] == ["square"] * 4
    assert all(n.path is None and not n.at_hand for n in explanation.nearest)
    explanation.plot()  # draws "not at hand" in their place
