"""Batch prediction on Ray (a local Ray of 2 CPUs, as a cluster would run it): the same rows
as single-process prediction, unreadable files as rows with their error, never a failed job."""

from __future__ import annotations

import re

import numpy as np
import pytest

from imgclf import ImgclfError, Predictor
from imgclf.cli import main
from tests.conftest import shared_dataset

ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'imgclf[ray]'")
pandas = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def pictures(tmp_path):
    """Hymenoptera's validation photos, and bad files beside them in a folder of their own."""
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "notes.jpg").write_text("not a picture")
    photo = sorted((shared_dataset("hymenoptera") / "val" / "bees").glob("*.jpg"))[0]
    (bad / "cut.jpg").write_bytes(photo.read_bytes()[:300])
    (bad / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    return shared_dataset("hymenoptera") / "val", bad


def test_ray_gives_single_process_answers_and_error_rows(local_ray, colour_model, pictures,
                                                         tmp_path):
    from imgclf.cli.commands import expand_paths
    from imgclf.inference.ray_batch import predict_dataset

    _, model = colour_model
    photos, bad = pictures
    table = predict_dataset(model, [photos, bad], batch_size=16, show_progress=False)
    paths = expand_paths([str(photos), str(bad)])
    assert len(table) == len(paths) == 153 + 4

    predictor = Predictor.load(model)
    expected = {str(path.absolute()): result for path, result in
                zip(paths, predictor.predict_batch(paths, show_progress=False))}
    rows = {row.path: row for row in table.itertuples(index=False)}
    errors = {path: row.error for path, row in rows.items() if isinstance(row.error, str)}
    assert sorted(name.rsplit("/", 1)[-1] for name in errors) == [
        "cut.jpg", "empty.jpg", "gone.jpg", "notes.jpg"]
    reasons = {name.rsplit("/", 1)[-1]: reason for name, reason in errors.items()}
    assert "empty" in reasons["empty.jpg"] and "could not be read" not in reasons["notes.jpg"]
    good = [path for path in expected if path not in errors and path in rows]
    assert len(good) == 153
    for path in good:
        want, got = expected[path], rows[path]
        assert (got.label, got.index, bool(got.unknown)) == (want.label, want.index, want.unknown)
        difference = max(abs(getattr(got, name) - p) for name, p in want.probabilities.items())
        assert difference <= 1e-5
        assert abs(got.outlier_score - want.outlier_score) <= 1e-5
    # rows come in the order of the files, unreadable ones in their place
    assert list(table.path) == [str(p.absolute()) for p in paths]


def test_the_cli_writes_one_parquet_or_csv_file(local_ray, colour_model, pictures, tmp_path,
                                                capsys):
    _, model = colour_model
    photos, bad = pictures
    for name in ("predictions.parquet", "predictions.csv"):
        out = tmp_path / name
        assert main(["predict", str(model), str(photos / "ants"), str(bad), "--engine", "ray",
                     "--out", str(out)]) == 0
        said = capsys.readouterr().out
        assert "Wrote 70 predictions" in said and "(4 unreadable file(s)" in said
        table = pandas.read_csv(out) if name.endswith(".csv") else pandas.read_parquet(out)
        assert list(table.columns) == ["path", "label", "index", "probability", "unknown",
                                       "outlier_score", "blue", "red", "error"]
        assert table.error.notna().sum() == 4 and table.label.notna().sum() == 70
        probabilities = table.loc[table.error.isna(), ["blue", "red"]].to_numpy(float)
        assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)


def test_ray_wants_an_output_and_says_what_it_takes(colour_model, capsys):
    _, model = colour_model
    assert main(["predict", str(model), "x.jpg", "--engine", "ray"]) == 1
    assert "give --out predictions.parquet" in capsys.readouterr().err
    assert main(["predict", str(model), "x.jpg", "--engine", "ray", "--out", "p.parquet",
                 "--int8"]) == 1
    assert "--engine ray takes --out" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # one table at a time
        main(["predict", str(model), "x.jpg", "--engine", "ray", "--out", "p.csv", "--json"])


def test_without_ray_the_error_says_how_to_install(colour_model, monkeypatch):
    from imgclf.inference import ray_batch
    from imgclf.inference.graphs import ONNX_HINT

    real = ray_batch.require

    def without_ray(module, hint=ONNX_HINT):
        if module == "ray":
            raise ImgclfError(hint)
        return real(module, hint)

    monkeypatch.setattr(ray_batch, "require", without_ray)
    with pytest.raises(ImgclfError, match=r"pip install 'imgclf\[ray\]'"):
        ray_batch.predict_dataset(colour_model[1], ".", out="p.parquet")


def test_the_csv_of_local_predict_has_the_same_columns(colour_model, pictures, tmp_path):
    _, model = colour_model
    photos, _ = pictures
    out = tmp_path / "local.csv"
    assert main(["predict", str(model), str(photos / "bees"), "--csv", str(out)]) == 0
    table = pandas.read_csv(out)
    assert list(table.columns) == ["path", "label", "index", "probability", "unknown",
                                   "outlier_score", "blue", "red", "error"]
    assert set(table.unknown) <= {0, 1} and table.error.isna().all()
    cells = out.read_text().splitlines()[1].split(",")
    assert re.fullmatch(r"\d\.\d{4}", cells[3])  # probabilities to 4 decimals, as before


def test_a_class_named_like_a_column_gets_prefixed_columns():
    from imgclf.inference.prediction import table_columns

    assert table_columns(["ants", "bees"])[6:8] == ["ants", "bees"]
    clashing = table_columns(["label", "unknown", "wasps"])
    assert len(set(clashing)) == len(clashing)
    assert clashing[6:9] == ["probability_label", "probability_unknown", "probability_wasps"]
