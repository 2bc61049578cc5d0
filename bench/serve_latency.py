"""Serving speed on this CPU: single-picture latency p50/p99 with PyTorch and onnxruntime, and
requests/second from 8 concurrent clients over loopback. Prints one JSON line.

Run: python bench/serve_latency.py [MODEL.imgclf]   (default: a probe model on hymenoptera)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # for tests.serving.running
DATA = HERE.parents[1] / "shared" / "datasets" / "hymenoptera"


def latencies(predictor, pictures: list[bytes], repeats: int) -> dict:
    predictor.predict(pictures[0])  # warm-up
    times = []
    for index in range(repeats):
        start = time.perf_counter()
        predictor.predict(pictures[index % len(pictures)])
        times.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": round(float(np.percentile(times, 50)), 1),
            "p99_ms": round(float(np.percentile(times, 99)), 1)}


def main() -> None:
    import httpx

    from imgclf import ImageData, Predictor, train
    from imgclf.serve.http import create_app
    from tests.serving import running

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", nargs="?")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--requests", type=int, default=160)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    model = Path(args.model) if args.model else None
    if model is None:
        data = ImageData.from_folder(DATA, verbose=False)
        train(data, mode="probe", output=folder, verbose=False)
        model = folder / "model.imgclf"
    pictures = [p.read_bytes() for p in sorted((DATA / "val").glob("*/*.jpg"))[:20]]
    result = {"benchmark": "serve_latency", "model": model.name, "cpus": os.cpu_count()}
    for runtime in ("torch", "onnx"):  # onnx: the default, its graph built once and cached
        result[runtime] = latencies(Predictor.load(model, runtime=runtime), pictures,
                                    args.repeats)
    for runtime in ("torch", "onnx"):
        with running(create_app(model, runtime=runtime, with_gradio=False)) as url:
            def ask(index: int) -> int:
                return httpx.post(f"{url}/predict", content=pictures[index % len(pictures)],
                                  timeout=120).status_code

            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=8) as pool:
                codes = list(pool.map(ask, range(args.requests)))
            seconds = time.perf_counter() - start
        result[f"http_{runtime}_requests_per_second_8_clients"] = round(len(codes) / seconds, 1)
        result[f"http_{runtime}_errors"] = sum(code != 200 for code in codes)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
