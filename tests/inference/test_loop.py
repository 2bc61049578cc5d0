"""The one forward loop: every way of running a network over pictures goes through it, and
what a run saves in its model file is what evaluate() gives."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf import ImageData, Learner, evaluate, load, train
from imgclf.inference import loop as inference

FAST = dict(image_size=64, batch_size=8, num_workers=0, verbose=False)


@pytest.fixture
def calls(monkeypatch):
    """Count the passes through inference.batches, by whoever makes them."""
    seen = []
    original = inference.batches

    def counting(network, dataset, **options):
        seen.append(len(getattr(dataset, "dataset", dataset)))  # a DataLoader's dataset
        yield from original(network, dataset, **options)

    monkeypatch.setattr(inference, "batches", counting)
    return seen


def test_every_forward_pass_goes_through_the_one_loop(colours, calls):
    from imgclf.training.embeddings import compute_embeddings

    data = ImageData.from_folder(colours, **FAST)
    learner = Learner.create(data, verbose=False)
    learner.validate()
    assert calls == [len(data.valid)]
    compute_embeddings(learner.network, data, "train", show_progress=False)
    assert calls[-1] == len(data.train)
    predictor = learner.predictor()
    predictor.predict(colours / "red" / "0.jpg")  # one picture is a batch of one
    assert calls[-1] == 1
    predictor.predict_batch([colours / "red" / "1.jpg", colours / "blue" / "1.jpg"],
                            show_progress=False)
    assert calls[-1] == 2
    evaluate(predictor, data, show_progress=False)
    assert calls[-1] == len(data.valid) and len(calls) == 5


def test_probabilities_and_embeddings_come_from_one_pass(colours):
    data = ImageData.from_folder(colours, **FAST)
    network = Learner.create(data, verbose=False).network
    dataset = data.dataset("valid", augment=False)
    both = inference.run(network, dataset, embeddings=True, num_workers=0)
    alone = inference.run(network, dataset, num_workers=0)
    assert both.embeddings.shape == (len(dataset), network.backbone.num_features)
    assert np.allclose(both.probabilities, alone.probabilities, atol=1e-6)
    assert np.allclose(both.probabilities.sum(axis=1), 1, atol=1e-5)


def test_unreadable_pictures_get_nan_rows_and_their_error(colours, tmp_path):
    data = ImageData.from_folder(colours, **FAST)
    predictor = Learner.create(data, verbose=False).predictor()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a picture")
    result = predictor.outputs([colours / "red" / "0.jpg", broken], num_workers=0)
    assert result.ok.tolist() == [True, False] and np.isnan(result.probabilities[1]).all()
    assert [error.source for error in result.errors] == [str(broken)]


@pytest.mark.parametrize("mode", ["probe", "fine_tune", "auto"])
def test_the_model_file_holds_the_figures_evaluate_gives(mode, colours, tmp_path, monkeypatch):
    monkeypatch.setattr("imgclf.training.plan.AUTO_PROBE_BELOW", 5)  # auto: the probe, then fine-tuning
    data = ImageData.from_folder(colours, valid_fraction=0.25, **FAST)
    learner = train(data, mode=mode, epochs=1, freeze_epochs=1, output=tmp_path / mode,
                    verbose=False, patience=0)  # auto: past a probe right on every colour
    phases = [row["phase"] for row in learner.history]
    assert phases == {"probe": ["probe"], "fine_tune": ["head", "all"],
                      "auto": ["probe", "all 1"]}[mode]
    model = load(tmp_path / mode / "model.imgclf")
    saved = model.info.metrics
    evaluation = evaluate(model, data, show_progress=False)
    assert evaluation.loss == pytest.approx(saved["valid_loss"], abs=1e-6)
    assert evaluation.accuracy == saved["accuracy"]
    assert evaluation.error_rate == pytest.approx(saved["error_rate"], abs=1e-12)


def test_reading_ahead_keeps_the_order_raises_in_place_and_stops_with_its_caller():
    import threading

    assert list(inference.read_ahead(iter(range(50)), depth=2)) == list(range(50))

    def failing():
        yield from range(3)
        raise OSError("disk gone")

    seen = []
    with pytest.raises(OSError, match="disk gone"):
        for item in inference.read_ahead(failing()):
            seen.append(item)
    assert seen == [0, 1, 2]
    before = set(threading.enumerate())
    endless = inference.read_ahead(iter(range(10**9)), depth=2)
    assert next(endless) == 0
    started = [t for t in threading.enumerate() if t not in before]
    assert [t.name for t in started] == ["imgclf-read-ahead"]
    endless.close()  # as a Ctrl-C or an error in the caller's loop does
    started[0].join(timeout=5)
    assert not started[0].is_alive()


def test_predictions_come_in_input_order_as_batches_finish(colour_model, tmp_path):
    from imgclf import Predictor, ImageError

    photos, model = colour_model
    predictor = Predictor.load(model)
    paths = sorted(photos.rglob("*.jpg"))[:11]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a picture")
    paths = [*paths[:4], broken, *paths[4:]]
    # read in this process, a thread ahead of the network: 4 batches of 3
    each = list(predictor.predict_each(paths, batch_size=3, num_workers=0))
    assert [position for position, _ in each] == list(range(len(paths)))
    assert isinstance(each[4][1], ImageError) and "broken.jpg" in each[4][1].source
    whole = predictor.outputs(paths, num_workers=0)
    for position, result in each:
        if position != 4:
            assert result.probabilities == pytest.approx(
                dict(zip(predictor.classes, whole.probabilities[position].tolist())), abs=1e-6)


def test_the_first_batch_is_small_so_the_first_answers_come_sooner(colour_model):
    from imgclf import Predictor

    photos, model = colour_model
    predictor = Predictor.load(model)
    paths = sorted(photos.rglob("*.jpg"))[:11]
    dataset = inference.ImageFiles(paths, predictor.transform)
    sizes = [len(batch.indices) for batch in inference.batches(
        predictor.network, dataset, batch_size=4, num_workers=0, first_batch=1)]
    assert sizes == [1, 4, 4, 2]
    even = inference.run(predictor.network, paths, transform=predictor.transform,
                         batch_size=4, num_workers=0)
    ramped = [result for _, result in predictor.predict_each(paths, batch_size=4,
                                                             num_workers=0)]
    assert [result.probabilities for result in ramped] == [
        pytest.approx(dict(zip(predictor.classes, row.tolist())), abs=1e-6)
        for row in even.probabilities]


def test_on_more_cores_an_onnxruntime_network_reads_with_threads_in_order(colour_model,
                                                                          tmp_path,
                                                                          monkeypatch):
    """Where a torch network gets DataLoader processes (more than 2 cores), onnxruntime's
    gets reading threads: no torch imported, rows in order, a bad file in its place."""
    import threading

    from imgclf import ImageError, Predictor

    photos, model = colour_model
    predictor = Predictor.load(model)
    assert predictor.runtime == "onnx"
    paths = sorted(photos.rglob("*.jpg"))[:11]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a picture")
    paths = [*paths[:4], broken, *paths[4:]]
    alone = [result for _, result in predictor.predict_each(paths, batch_size=4)]
    readers = set()
    original = inference.ImageFiles.__getitem__

    def noting(self, index):
        readers.add(threading.current_thread().name)
        return original(self, index)

    monkeypatch.setattr(inference, "inference_workers", lambda: 3)  # an 8-core machine, say
    monkeypatch.setattr(inference.ImageFiles, "__getitem__", noting)
    threaded = list(predictor.predict_each(paths, batch_size=4))
    assert [position for position, _ in threaded] == list(range(len(paths)))
    assert isinstance(threaded[4][1], ImageError) and "broken.jpg" in threaded[4][1].source
    assert len({name for name in readers if name.startswith("imgclf-read")}) > 1
    for (_, result), before in zip(threaded, alone):
        if not isinstance(result, ImageError):
            assert result.probabilities == pytest.approx(before.probabilities, abs=1e-6)
