"""The server's micro-batching: concurrent pictures share forward passes, answers unchanged;
a full queue is refused with 503 and Retry-After, never left waiting."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from imgclf import Predictor
from imgclf.data.decoding import load_image
from imgclf.serve.batching import Batcher, QueueFull
from tests.serving import running


class Gated:
    """A Predictor whose batches wait for a gate and are recorded, to see what went together."""

    def __init__(self, predictor: Predictor):
        self.predictor, self.sizes = predictor, []
        self.gate, self.entered = threading.Event(), threading.Event()
        self.fail_after_first = False

    def predict_prepared(self, pictures):
        self.entered.set()
        assert self.gate.wait(30)
        self.sizes.append(len(pictures))
        if self.fail_after_first and len(self.sizes) > 1:
            raise RuntimeError("the network broke")
        return self.predictor.predict_prepared(pictures)


@pytest.fixture
def pictures(colour_model):
    photos, path = colour_model
    files = sorted(photos.glob("*/*.jpg"))[:10]
    predictor = Predictor.load(path)
    return predictor, [predictor.transform(load_image(p)) for p in files], files


def test_waiting_pictures_go_through_together_with_the_same_answers(pictures):
    predictor, decoded, files = pictures
    gated = Gated(predictor)
    batcher = Batcher(gated)
    try:
        first = batcher.submit(decoded[0])
        assert gated.entered.wait(30)  # the worker holds the first picture at the gate
        rest = [batcher.submit(picture) for picture in decoded[1:]]
        gated.gate.set()
        answers = [future.result(30) for future in [first, *rest]]
    finally:
        batcher.close()
    assert gated.sizes == [1, 9]  # the nine that queued meanwhile: one forward pass
    for file, answer in zip(files, answers):
        alone = predictor.predict(file)  # read from the file, as the CLI reads it
        assert answer.label == alone.label
        assert answer.probabilities == pytest.approx(alone.probabilities, abs=1e-5)


def test_a_full_queue_refuses_at_once_and_an_error_reaches_every_request(pictures):
    predictor, decoded, _ = pictures
    gated = Gated(predictor)
    batcher = Batcher(gated, max_queue=2)
    try:
        held = batcher.submit(decoded[0])
        assert gated.entered.wait(30)
        waiting = [batcher.submit(decoded[1]), batcher.submit(decoded[2])]
        with pytest.raises(QueueFull):
            batcher.submit(decoded[3])
        gated.fail_after_first = True  # the next batch fails: each of its requests hears why
        gated.gate.set()
        assert held.result(30).label in ("red", "blue")
        for future in waiting:
            with pytest.raises(RuntimeError, match="the network broke"):
                future.result(30)
        assert gated.sizes == [1, 2]
    finally:
        batcher.close()


def test_the_server_answers_503_with_retry_after_when_its_queue_is_full(colour_model,
                                                                       monkeypatch):
    import httpx

    from imgclf.serve.http import create_app

    photos, path = colour_model
    app = create_app(path, with_gradio=False, batching={"max_queue": 1})
    gated = Gated(app.state.batcher.predictor)
    app.state.batcher.predictor = gated
    body = (photos / "red" / "1.jpg").read_bytes()
    with running(app) as url, ThreadPoolExecutor(2) as pool:
        held = pool.submit(httpx.post, f"{url}/predict", content=body, timeout=60)
        assert gated.entered.wait(30)
        queued = pool.submit(httpx.post, f"{url}/predict", content=body, timeout=60)
        for _ in range(200):  # until the second picture is in the queue
            if app.state.batcher._queue.full():
                break
            threading.Event().wait(0.05)
        refused = httpx.post(f"{url}/predict", content=body, timeout=30)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "busy" in refused.json()["error"]
        gated.gate.set()
        assert held.result().status_code == queued.result().status_code == 200
        assert queued.result().json()["label"] == "red"
