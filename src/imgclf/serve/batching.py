"""Micro-batching: the pictures of concurrent requests go through the network together.

``POST /predict`` decodes and transforms each upload on its own thread (so the queue holds
network-sized arrays, not full-size pictures), then hands it to a Batcher:
one worker thread takes whatever pictures are waiting (up to MAX_BATCH, waiting at most
MAX_WAIT for more once it has one) and runs them as one batch through ``Predictor``, the path
every other prediction takes. The queue is bounded: past MAX_QUEUE waiting pictures a request
is refused at once (the server answers 503 with Retry-After) instead of waiting without end.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imgclf.inference.prediction import Prediction
    from imgclf.inference.predictor import Predictor

# Pictures in one forward pass at most: past 16, a batch is no faster a picture on a CPU
# (bench/throughput.py: batch 1 and 32 within 2% with onnxruntime), and each one waits longer.
MAX_BATCH = 16
# Seconds the worker waits for more pictures once it holds one: a hundredth of a forward pass
# at 288 px, enough for requests arriving together to meet.
MAX_WAIT = 0.002
# Pictures waiting at most; one more is refused with 503. 64 pictures are 4 full batches,
# about 1.5 s of work at 288 px on 2 cores, and 64 x 3 x 288 x 288 floats (64 MB) of memory.
MAX_QUEUE = 64


class QueueFull(Exception):
    """More pictures are waiting than the server will hold: try again shortly."""


class Batcher:
    """Runs submitted pictures through a Predictor in batches, on one worker thread.

    Example:
        >>> predictor = Predictor.load("ants.imgclf")
        >>> batcher = Batcher(predictor)
        >>> batcher.submit(predictor.transform.read("ant.jpg")).result().label
        'ants'
    """

    def __init__(self, predictor: Predictor, *, max_batch: int = MAX_BATCH,
                 max_wait: float = MAX_WAIT, max_queue: int = MAX_QUEUE):
        self.predictor, self.max_batch, self.max_wait = predictor, max_batch, max_wait
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._closed = False
        self._closing = threading.Lock()  # no picture slips in behind the stop sign
        self._worker = threading.Thread(target=self._work, name="imgclf-batcher", daemon=True)
        self._worker.start()

    def submit(self, picture: Any) -> Future:
        """Queue a picture prepared with ``predictor.transform``; its Future gives the
        Prediction.

        Raises:
            QueueFull: MAX_QUEUE pictures are already waiting.
        """
        future: Future = Future()
        with self._closing:
            if self._closed:
                raise RuntimeError("This Batcher is closed.")
            try:
                self._queue.put_nowait((picture, future))
            except queue.Full:
                raise QueueFull from None
        return future

    def close(self) -> None:
        """Finish the pictures already queued, then stop the worker."""
        with self._closing:
            if self._closed:
                return
            self._closed = True
        if threading.current_thread() is self._worker:  # garbage-collected on the worker
            try:
                self._queue.put_nowait((None, None))
            except queue.Full:
                pass  # the worker is daemonic: it ends with the process
            return
        self._queue.put((None, None))  # waits for room: every picture before it is run
        self._worker.join()

    def _work(self) -> None:
        while True:
            batch = [self._queue.get()]
            deadline = time.monotonic() + self.max_wait
            while batch[-1][1] is not None and len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            stop = batch[-1][1] is None
            self._run([(picture, future) for picture, future in batch if future is not None])
            if stop:
                return

    def _run(self, batch: list[tuple[Any, Future]]) -> None:
        batch = [(picture, future) for picture, future in batch
                 if future.set_running_or_notify_cancel()]
        if not batch:
            return
        try:
            results: list[Prediction | Exception] = self.predictor.predict_prepared(
                [picture for picture, _ in batch])
        except Exception as error:  # noqa: BLE001 - handed to every waiting request
            results = [error] * len(batch)
        for (_, future), result in zip(batch, results):
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
