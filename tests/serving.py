"""Helpers for serving tests: a tiny trained model and a real server on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image


# Headless Chromium for the browser tests (the `chromium` fixture in conftest.py finds it).
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def colour_photos(root: Path, per_class: int = 12) -> Path:
    for label, tint in (("red", (180, 20, 20)), ("blue", (20, 20, 180))):
        (root / label).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            generator = np.random.default_rng(index + 100 * (label == "blue"))
            pixels = generator.integers(0, 70, (72, 72, 3)) + np.array(tint)
            Image.fromarray(np.clip(pixels, 0, 255).astype("uint8")).save(
                root / label / f"{index}.jpg", quality=90)
    return root


def probe_model(photos: Path, out: Path) -> Path:
    from imgclf import ImageData, train

    data = ImageData.from_folder(photos, image_size=64, num_workers=0, verbose=False)
    train(data, mode="probe", output=out, verbose=False)
    return out / "model.imgclf"


@contextmanager
def running(app):
    """Serve an ASGI app with uvicorn on a free loopback port; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
