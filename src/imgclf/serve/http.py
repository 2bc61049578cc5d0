"""The HTTP server: a JSON API (POST /predict, GET /health, GET /model) with the Gradio page at /.

Bad requests get a 4xx and a one-line JSON message, never a stack trace. Uploads are decoded
side by side, then their pictures join a bounded queue whose worker runs the waiting ones as
one batch (batching.py); a full queue answers 503 with Retry-After.

No `from __future__ import annotations` here: FastAPI reads the endpoint annotations at run
time, and `Request` is imported inside create_app (fastapi is an optional extra).
"""


import asyncio
import contextlib
import os
import shutil
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

from imgclf._version import __version__
from imgclf.config import InferenceConfig, ServeConfig
from imgclf.errors import ImageError, ImgclfError
from imgclf.inference.predictor import Predictor
from imgclf.serve import SERVE_HINT
from imgclf.serve.batching import Batcher, QueueFull
from imgclf.serve.gradio_app import build_blocks

# Uploads larger than this are refused with 413 before they are decoded, on /predict and on
# the Gradio page alike.
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
# A multipart form may be this much larger than its file: boundaries, part headers, fields.
FORM_OVERHEAD_BYTES = 64 * 1024
# Host names that only this computer can reach.
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# The most a form's text field may hold (a picture needs no field at all).
FORM_FIELD_BYTES = 16 * 1024


def create_app(model: str | os.PathLike | Any, *, runtime: str = InferenceConfig.runtime,
               int8: bool = False,
               max_upload_bytes: int = MAX_UPLOAD_BYTES, examples: Any = None,
               with_gradio: bool = True, acceptance: float | None = None,
               thresholds: float | dict[str, float] | None = None,
               batching: dict | None = None, training_pictures: bool = False):
    """A FastAPI app serving a model file (or a Predictor).

    thresholds: a multi-label model's decision thresholds, if not its own (Predictor.load).
    batching: Batcher's settings (max_batch, max_wait, max_queue), if not its defaults.
    training_pictures: the page's "Why this answer?" panel shows the nearest training
    pictures (gradio_app.build_blocks): only for a server this computer alone can reach.

    Example:
        >>> import uvicorn
        >>> uvicorn.run(create_app("models/ants/model.imgclf"), host="127.0.0.1", port=7860)
    """
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse
        from starlette.concurrency import run_in_threadpool
        from starlette.requests import ClientDisconnect
    except ImportError:
        raise ImgclfError(SERVE_HINT) from None
    predictor = model if isinstance(model, Predictor) else Predictor.load(
        model, runtime=runtime, int8=int8, acceptance=acceptance, thresholds=thresholds)
    batcher = Batcher(predictor, **(batching or {}))
    # A 10 MB upload can decode to half a gigabyte of pixels: a few decodes at a time, not
    # one per waiting request, keep the server's memory bounded.
    decoding = threading.BoundedSemaphore(max(1, min(4, os.cpu_count() or 1)))
    app = FastAPI(title="imgclf", version=__version__, docs_url="/api/docs",
                  openapi_url="/api/openapi.json")

    def refuse(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def too_large() -> JSONResponse:
        # Connection: close makes uvicorn hang up rather than read (and throw away) the rest
        # of a body that may go on for hundreds of megabytes
        return JSONResponse({"error": f"Upload too large: over {_size(max_upload_bytes)}."},
                            status_code=413, headers={"connection": "close"})

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/model")
    def model_info() -> dict:
        info = predictor.info
        # no validation split gives NaN figures, which JSON cannot carry
        metrics = {k: v if v == v else None for k, v in info.metrics.items()}
        return {"classes": predictor.classes, "backbone": info.backbone,
                "input": predictor.input.to_dict(), "metrics": metrics,
                "imgclf_version": info.imgclf_version, "runtime": predictor.runtime,
                "unknown": {**info.unknown.to_dict(), "threshold": predictor.threshold,
                            "acceptance": predictor.acceptance}
                if info.unknown else None,
                # a multi-label model: each label is given from its threshold on
                **({"multi_label": True, "thresholds": dict(zip(
                    predictor.classes, predictor.thresholds.tolist()))}
                   if predictor.multi_label else {})}

    @app.post("/predict")
    async def predict(request: Request):
        # Only multipart is a form: `curl --data-binary @photo.jpg` sends raw bytes labelled
        # application/x-www-form-urlencoded, and those bytes are the picture.
        is_form = request.headers.get("content-type", "").startswith("multipart/form-data")
        limit = max_upload_bytes + (FORM_OVERHEAD_BYTES if is_form else 0)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            return too_large()
        # Counted as it arrives (a chunked upload declares no length): reading stops at the
        # limit, and nothing past it is read, spooled to disk or kept.
        body = _limited(request.stream(), limit)
        try:
            data = await (_form_file(request, body) if is_form else _join(body))
        except _TooLarge:
            return too_large()
        except _NoFile:
            return refuse(400, "No file in the form: send the picture as a file field.")
        except ClientDisconnect:
            return refuse(400, "The upload was cut off.")
        except Exception:  # noqa: BLE001 - malformed multipart bodies raise many types
            return refuse(400, "Malformed multipart body.")
        if len(data) > max_upload_bytes:
            return too_large()
        if not data:
            return refuse(400, "Empty request: send a picture as the body or as a file field.")

        def decode():  # read and transform here: the queue holds network-sized arrays
            with decoding:
                return predictor.transform.read(data)

        try:
            # before the queue: a slow picture (144 megapixels, say) holds up no one else's
            # prediction; only forward passes wait their turn
            picture = await run_in_threadpool(decode)
        except ImageError as error:
            return refuse(422, f"Not a readable picture: {error.reason}")
        try:
            prediction = await asyncio.wrap_future(batcher.submit(picture))
        except QueueFull:
            return JSONResponse({"error": "The server is busy: try again in a second."},
                                status_code=503, headers={"retry-after": "1"})
        return prediction.to_dict()

    @app.exception_handler(Exception)
    async def unexpected(request, error):  # never a stack trace to the client
        return JSONResponse({"error": f"Internal error ({type(error).__name__})."},
                            status_code=500)

    weakref.finalize(app, batcher.close)  # its worker ends with the app
    app.state.batcher = batcher
    if with_gradio:
        import gradio

        page = build_blocks(predictor, examples=examples, training_pictures=training_pictures)
        app = gradio.mount_gradio_app(app, page, path="/", max_file_size=max_upload_bytes)
    return app


def serve(model: str | os.PathLike, *, host: str = ServeConfig.host, port: int = ServeConfig.port,
          runtime: str = InferenceConfig.runtime, int8: bool = False, examples: Any = None,
          acceptance: float | None = None,
          thresholds: float | dict[str, float] | None = None) -> None:
    """Run the server until interrupted (what `imgclf serve` does).

    The page's uploads and copies of the examples go to a folder of this server's own,
    removed when it stops.
    """
    try:
        import uvicorn
    except ImportError:
        raise ImgclfError(SERVE_HINT) from None
    with own_gradio_folder():
        # the page shows training pictures only to this computer (see build_blocks)
        app = create_app(model, runtime=runtime, int8=int8, examples=examples,
                         acceptance=acceptance, thresholds=thresholds,
                         training_pictures=host in LOOPBACK)
        print(f"Serving {model} on http://{host}:{port} (API: POST /predict, GET /model)")
        uvicorn.run(app, host=host, port=port, log_level="warning")


@contextlib.contextmanager
def own_gradio_folder():
    """Point Gradio's upload folder (GRADIO_TEMP_DIR) at a new folder, removed afterwards.

    Gradio reads the variable as the page is made and as each upload is checked, so this
    wraps the server's whole life; it is process-wide, hence one server per process.
    """
    before = os.environ.get("GRADIO_TEMP_DIR")
    folder = tempfile.mkdtemp(prefix="imgclf-serve-", dir=before)
    os.environ["GRADIO_TEMP_DIR"] = folder
    try:
        yield Path(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if before is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = before


class _TooLarge(Exception):
    """The request body passed the size limit (raised while it is read, not after)."""


class _NoFile(Exception):
    """A multipart form without a file field."""


async def _limited(chunks, limit: int):
    """The body's chunks, raising _TooLarge as soon as they add up to more than limit."""
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        yield chunk


async def _join(chunks) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def _form_file(request, chunks) -> bytes:
    """The first file of a multipart form, parsed from the (size-limited) chunks."""
    from starlette.formparsers import MultiPartParser

    parser = MultiPartParser(request.headers, chunks, max_files=4, max_fields=16,
                             max_part_size=FORM_FIELD_BYTES)
    form = await parser.parse()
    try:
        uploads = [value for value in form.values() if hasattr(value, "read")]
        if not uploads:
            raise _NoFile
        return await uploads[0].read()
    finally:
        await form.close()


def _size(count: int) -> str:
    """A byte count for people: "10 MB", "195 KB"."""
    if count >= 1024 * 1024:
        return f"{count / 1024 / 1024:.0f} MB"
    return f"{count / 1024:.0f} KB"
