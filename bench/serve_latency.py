"""Serving speed on this CPU: single-picture latency p50/p99 with PyTorch and onnxruntime (taking
turns), and requests/second and p50/p99 from 8 and 32 concurrent clients over loopback (the
server batches concurrent pictures). Prints one JSON line.

Each server runs in its own process, as `imgclf serve` does, and each client thread keeps its
connection open, as a browser or any HTTP client library does: a client that opened a new
connection (and TLS context) per request spent more CPU than the server on these 2 cores.
The servers are all started, then loaded in turns (ROUNDS each), so that they are measured
side by side.

Run: python bench/serve_latency.py [MODEL.imgclf] [--baseline OTHER/src]
  [--baseline-runtime torch|onnx]
  --baseline: the src folder of another imgclf checkout (a git worktree of an older commit,
  say); its server runs the same way, side by side, with --baseline-runtime (default torch),
  and the JSON gives the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "src"
DATA = HERE.parents[1] / "shared" / "datasets" / "hymenoptera"
# Turns each server gets at each number of clients (the requests split between them).
ROUNDS = 4

# The server process: the app `imgclf serve` runs, without the Gradio page.
SERVER = """
import sys, uvicorn
from imgclf.serve.http import create_app
uvicorn.run(create_app(sys.argv[1], runtime=sys.argv[2], with_gradio=False),
            host="127.0.0.1", port=int(sys.argv[3]), log_level="error")
"""


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


def serve(source: Path, model: Path, runtime: str) -> tuple[subprocess.Popen, str]:
    """Start a server from the imgclf in `source` (a src folder); wait until it answers."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {**os.environ, "PYTHONPATH": str(source)}
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(model), runtime, str(port)],
                               env=environment)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the {runtime} server from {source} did not start")


def load(url: str, pictures: list[bytes], clients: int, requests: int) -> tuple:
    """(seconds, [(status, milliseconds)]) of `clients` threads posting `requests` pictures."""
    from http.client import HTTPConnection
    from urllib.parse import urlsplit

    local = threading.local()
    where = urlsplit(url)

    def ask(index: int) -> tuple[int, float]:
        if not hasattr(local, "client"):  # one kept-open connection a client
            local.client = HTTPConnection(where.hostname, where.port, timeout=120)
        start = time.perf_counter()
        local.client.request("POST", "/predict", body=pictures[index % len(pictures)],
                             headers={"Content-Type": "application/octet-stream"})
        response = local.client.getresponse()
        response.read()
        return response.status, (time.perf_counter() - start) * 1000

    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(ask, range(clients)))  # warm-up: connections open, batches at size
        start = time.perf_counter()
        answers = list(pool.map(ask, range(requests)))
        return time.perf_counter() - start, answers


def summary(rounds: list[tuple]) -> dict:
    """requests/s, p50/p99 and errors over a server's rounds."""
    seconds = sum(taken for taken, _ in rounds)
    answers = [answer for _, round_answers in rounds for answer in round_answers]
    waits = [ms for _, ms in answers]
    return {"requests_per_second": round(len(answers) / seconds, 1),
            "p50_ms": round(float(np.percentile(waits, 50)), 1),
            "p99_ms": round(float(np.percentile(waits, 99)), 1),
            "errors": sum(status != 200 for status, _ in answers)}


def main() -> None:
    sys.path.insert(0, str(SOURCE))
    from imgclf import ImageData, Predictor, train

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", nargs="?")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--requests", type=int, default=320)
    parser.add_argument("--baseline", type=Path,
                        help="src folder of another imgclf checkout, served side by side")
    parser.add_argument("--baseline-runtime", choices=("torch", "onnx"), default="torch",
                        help="the runtime the baseline's server uses (default: torch)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    model = Path(args.model) if args.model else None
    if model is None:
        data = ImageData.from_folder(DATA, verbose=False)
        train(data, mode="probe", output=folder, verbose=False)
        model = folder / "model.imgclf"
    pictures = [p.read_bytes() for p in sorted((DATA / "val").glob("*/*.jpg"))[:20]]
    result = {"benchmark": "serve_latency", "model": model.name, "cpus": os.cpu_count(),
              "image_size": Predictor.load(model, runtime="torch").input.image_size}
    # onnx: the default, its graph built once and cached
    result.update(latencies({runtime: Predictor.load(model, runtime=runtime)
                             for runtime in ("torch", "onnx")}, pictures, args.repeats))
    servers = [("torch", SOURCE, "torch"), ("onnx", SOURCE, "onnx")]
    if args.baseline:
        servers.append((f"baseline_{args.baseline_runtime}", args.baseline.resolve(),
                        args.baseline_runtime))
    # every server up at once (idle, each sleeps), loaded in turns, ROUNDS times each: a slower
    # minute of this shared machine slows them alike
    running = []
    try:
        for name, source, runtime in servers:
            running.append((name, *serve(source, model, runtime)))
        for clients in (8, 32):
            rounds: dict[str, list] = {name: [] for name, _, _ in running}
            for _ in range(ROUNDS):
                for name, _, url in running:
                    rounds[name].append(load(url, pictures, clients,
                                             max(clients, args.requests // ROUNDS)))
            for name, taken in rounds.items():
                result[f"http_{name}_{clients}_clients"] = summary(taken)
    finally:
        for _, process, _ in running:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    if args.baseline:  # the default runtime now, and PyTorch alone, over the old server
        baseline = result[f"http_baseline_{args.baseline_runtime}_8_clients"][
            "requests_per_second"]
        for runtime in ("onnx", "torch"):
            result[f"{runtime}_over_baseline_8_clients"] = round(
                result[f"http_{runtime}_8_clients"]["requests_per_second"] / baseline, 2)
    failed = [name for name, value in result.items()
              if name.startswith("http_") and value["errors"]]
    if failed:  # a ratio of failing servers would mean nothing
        result["failed"] = failed
    print(json.dumps(result))


if __name__ == "__main__":
    main()
