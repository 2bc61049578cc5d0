"""The HTTP server: a JSON API (POST /predict, GET /health, GET /model) with the Gradio page at /.

Bad requests get a 4xx and a one-line JSON message, never a stack trace. Predictions run one
at a time behind a lock (a queue), which on a 2-core CPU is faster than running them side by
side.

No `from __future__ import annotations` here: FastAPI reads the endpoint annotations at run
time, and `Request` is imported inside create_app (fastapi is an optional extra).
"""


import os
import threading
from typing import Any

from imgclf.errors import ImageError, ImgclfError
from imgclf.serve import SERVE_HINT

# Uploads larger than this are refused with 413 before they are decoded.
MAX_UPLOAD_BYTES = 10 * 1024 * 1024


def create_app(model: str | os.PathLike | Any, *, runtime: str = "torch",
               max_upload_bytes: int = MAX_UPLOAD_BYTES, examples: Any = None,
               with_gradio: bool = True, acceptance: float | None = None):
    """A FastAPI app serving a model file (or a Predictor).

    Example:
        >>> import uvicorn
        >>> uvicorn.run(create_app("models/ants/model.imgclf"), host="127.0.0.1", port=7860)
    """
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse
        from starlette.concurrency import run_in_threadpool
    except ImportError:
        raise ImgclfError(SERVE_HINT) from None
    from imgclf._version import __version__
    from imgclf.predict import Predictor

    predictor = model if isinstance(model, Predictor) else Predictor.load(
        model, runtime=runtime, acceptance=acceptance)
    lock = threading.Lock()
    app = FastAPI(title="imgclf", version=__version__, docs_url="/api/docs",
                  openapi_url="/api/openapi.json")

    def refuse(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

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
                "imgclf_version": info.imgclf_version, "runtime": runtime,
                "unknown": {**info.unknown.to_dict(), "threshold": predictor.threshold,
                            "acceptance": predictor.acceptance}
                if info.unknown else None}

    @app.post("/predict")
    async def predict(request: Request):
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_upload_bytes + 4096:
            return refuse(413, f"Upload too large: over {max_upload_bytes // 1024 // 1024} MB.")
        content_type = request.headers.get("content-type", "")
        # Only multipart is a form: `curl --data-binary @photo.jpg` sends raw bytes labelled
        # application/x-www-form-urlencoded, and those bytes are the picture.
        if content_type.startswith("multipart/form-data"):
            try:
                form = await request.form()
            except Exception:  # noqa: BLE001 - malformed multipart bodies raise many types
                return refuse(400, "Malformed multipart body.")
            uploads = [value for value in form.values() if hasattr(value, "read")]
            if not uploads:
                return refuse(400, "No file in the form: send the picture as a file field.")
            data = await uploads[0].read(max_upload_bytes + 1)
        else:
            data = bytearray()
            async for chunk in request.stream():
                data.extend(chunk)
                if len(data) > max_upload_bytes:
                    break
            data = bytes(data)
        if len(data) > max_upload_bytes:
            return refuse(413, f"Upload too large: over {max_upload_bytes // 1024 // 1024} MB.")
        if not data:
            return refuse(400, "Empty request: send a picture as the body or as a file field.")

        def run():
            with lock:
                return predictor.predict(data)

        try:
            prediction = await run_in_threadpool(run)
        except ImageError as error:
            return refuse(422, f"Not a readable picture: {error.reason}")
        return prediction.to_dict()

    @app.exception_handler(Exception)
    async def unexpected(request, error):  # never a stack trace to the client
        return JSONResponse({"error": f"Internal error ({type(error).__name__})."},
                            status_code=500)

    if with_gradio:
        import gradio

        from imgclf.serve.gradio_app import build_blocks

        app = gradio.mount_gradio_app(app, build_blocks(predictor, examples=examples), path="/")
    return app


def serve(model: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 7860,
          runtime: str = "torch", examples: Any = None, acceptance: float | None = None
          ) -> None:
    """Run the server until interrupted (what `imgclf serve` does)."""
    try:
        import uvicorn
    except ImportError:
        raise ImgclfError(SERVE_HINT) from None
    app = create_app(model, runtime=runtime, examples=examples, acceptance=acceptance)
    print(f"Serving {model} on http://{host}:{port} (API: POST /predict, GET /model)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
