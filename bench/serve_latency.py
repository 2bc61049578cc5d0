"""Serving speed on this CPU: single-picture latency p50/p99 with PyTorch and onnxruntime (taking
turns), and requests/second and p50/p99 from 8 and 32 concurrent clients over loopback (the
server batches concurrent pictures). Prints one JSON line.

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


def latencies(predictors: dict, pictures: list[bytes], repeats: int) -> dict:
    """p50/p99 of Predictor.predict per runtime, the runtimes taking turns picture by picture
    (so a slower minute of this shared machine slows both alike)."""
    times: dict[str, list[float]] = {name: [] for name in predictors}
    for predictor in predictors.values():
        predictor.predict(pictures[0])  # warm-up
    for index in range(repeats):
        for name, predictor in predictors.items():
            start = time.perf_counter()
            predictor.predict(pictures[index % len(pictures)])
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: {"p50_ms": round(float(np.percentile(values, 50)), 1),
                   "p99_ms": round(float(np.percentile(values, 99)), 1)}
            for name, values in times.items()}


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
    # onnx: the default, its graph built once and cached
    result.update(latencies({runtime: Predictor.load(model, runtime=runtime)
                             for runtime in ("torch", "onnx")}, pictures, args.repeats))
    for runtime in ("torch", "onnx"):
        with running(create_app(model, runtime=runtime, with_gradio=False)) as url:
            def ask(index: int) -> tuple[int, float]:
                start = time.perf_counter()
                status = httpx.post(f"{url}/predict", content=pictures[index % len(pictures)],
                                    timeout=120).status_code
                return status, (time.perf_counter() - start) * 1000

            ask(0)  # warm-up
            for clients in (8, 32):
                start = time.perf_counter()
                with ThreadPoolExecutor(max_workers=clients) as pool:
                    answers = list(pool.map(ask, range(args.requests)))
                seconds = time.perf_counter() - start
                waits = [ms for _, ms in answers]
                result[f"http_{runtime}_{clients}_clients"] = {
                    "requests_per_second": round(len(answers) / seconds, 1),
                    "p50_ms": round(float(np.percentile(waits, 50)), 1),
                    "p99_ms": round(float(np.percentile(waits, 99)), 1),
                    "errors": sum(status != 200 for status, _ in answers)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
