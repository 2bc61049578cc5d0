"""`imgclf serve` under load: 8, then 32 concurrent clients on loopback, sending a mix of good
pictures, garbage bytes, empty bodies and oversized uploads (chunked and with a length, raw
and multipart, to the API and to the page's upload route). Counts 2xx/4xx/5xx, transport
errors and answers other than the expected one; latency p50/p99; the server process's memory
(RSS) before and after, and its peak; and the upload files left once the server has stopped.
Prints one JSON line; exits 1 on any 5xx, transport error or unexpected answer.

The server is the real command, `python -m imgclf serve MODEL`, in its own process (its memory
is then its own); the model is a small probe model trained here on generated pictures.

Run: python bench/load.py [--model MODEL.imgclf] [--requests 320] [--seconds 45]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
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
sys.path.insert(0, str(HERE.parent))  # for tests.serving

MB = 1024 * 1024
OVERSIZED = 11 * MB  # over the server's 10 MB limit
ENDLESS = 64 * MB  # a chunked body that would go on this long if the server read it all
# kind -> (how many in each 16 requests, the status the server must answer with)
MIX = {"good": (8, 200), "garbage": (1, 422), "empty": (1, 400),
       "oversized_length": (1, 413), "oversized_chunked": (1, 413),
       "oversized_form": (1, 413), "oversized_form_chunked": (1, 413),
       "page_upload": (1, 200), "page_upload_oversized": (1, 413)}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def memory_mb(pid: int) -> dict[str, float]:
    """The process's resident memory now and at its peak, in MB (Linux /proc)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_mb": fields["VmRSS"], "peak_mb": fields["VmHWM"]}


def pictures(folder: Path) -> list[bytes]:
    """Good uploads: the small training photos and a few phone-sized JPEGs."""
    from PIL import Image

    small = [p.read_bytes() for p in sorted(folder.glob("*/*.jpg"))[:8]]
    large = []
    for seed in range(4):
        path = folder / f"large{seed}.jpg"
        noise = np.random.default_rng(seed).integers(0, 255, (1200, 1600, 3), dtype=np.uint8)
        Image.fromarray(noise).save(path, quality=85)
        large.append(path.read_bytes())
    return small + large


class Clients:
    """One httpx client per worker thread; each request -> (kind, status or None, seconds)."""

    def __init__(self, url: str, good: list[bytes]):
        self.url, self.good = url, good
        self.local = threading.local()
        generator = np.random.default_rng(0)
        self.garbage = [generator.bytes(20_000) for _ in range(4)]
        self.oversized = bytes(OVERSIZED)
        self.chunk = bytes(64 * 1024)

    def client(self):
        import httpx

        if not hasattr(self.local, "client"):
            self.local.client = httpx.Client(base_url=self.url, timeout=120)
        return self.local.client

    def endless(self, head: bytes = b""):
        yield head
        for _ in range(ENDLESS // len(self.chunk)):
            yield self.chunk

    def send(self, kind: str, index: int):
        import httpx

        client = self.client()
        form = {"content-type": "multipart/form-data; boundary=b0undary"}
        part = (b'--b0undary\r\nContent-Disposition: form-data; name="file"; '
                b'filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n')
        start = time.perf_counter()
        try:
            if kind == "good":
                response = client.post("/predict", content=self.good[index % len(self.good)])
            elif kind == "garbage":
                response = client.post("/predict", content=self.garbage[index % 4])
            elif kind == "empty":
                response = client.post("/predict", content=b"")
            elif kind == "oversized_length":
                response = client.post("/predict", content=self.oversized)
            elif kind == "oversized_chunked":
                response = client.post("/predict", content=self.endless())
            elif kind == "oversized_form":
                response = client.post("/predict", files={"file": ("a.jpg", self.oversized)})
            elif kind == "oversized_form_chunked":
                response = client.post("/predict", content=self.endless(part), headers=form)
            elif kind == "page_upload":
                response = client.post("/gradio_api/upload", files={
                    "files": ("photo.jpg", self.good[index % len(self.good)])})
            else:  # page_upload_oversized
                response = client.post("/gradio_api/upload",
                                       files={"files": ("big.jpg", self.oversized)})
            status = response.status_code
        except httpx.HTTPError as error:
            status = f"{type(error).__name__}"
        return kind, status, time.perf_counter() - start


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else None


def load(clients: Clients, concurrency: int, requests: int, seconds: float) -> dict:
    """`requests` requests from `concurrency` threads, stopping early after `seconds`."""
    schedule = [kind for kind, (count, _) in MIX.items() for _ in range(count)]
    kinds = [schedule[i % len(schedule)] for i in range(requests)]
    random.Random(concurrency).shuffle(kinds)
    deadline = time.perf_counter() + seconds

    def one(index: int):
        if time.perf_counter() > deadline:
            return None
        return clients.send(kinds[index], index)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = [r for r in pool.map(one, range(requests)) if r is not None]
    elapsed = time.perf_counter() - start
    counts = {"2xx": 0, "4xx": 0, "5xx": 0, "transport_errors": 0, "unexpected": 0}
    by_kind: dict[str, dict[str, int]] = {}
    for kind, status, _ in results:
        if isinstance(status, int):
            counts[f"{status // 100}xx"] = counts.get(f"{status // 100}xx", 0) + 1
        else:
            counts["transport_errors"] += 1
        counts["unexpected"] += status != MIX[kind][1]
        tally = by_kind.setdefault(kind, {})
        tally[str(status)] = tally.get(str(status), 0) + 1
    every = [seconds for _, _, seconds in results]
    good = [seconds for kind, status, seconds in results if kind == "good" and status == 200]
    return {"requests": len(results), "seconds": round(elapsed, 1),
            "requests_per_second": round(len(results) / elapsed, 1), **counts,
            "p50_ms": percentile(every, 50), "p99_ms": percentile(every, 99),
            "good_p50_ms": percentile(good, 50), "good_p99_ms": percentile(good, 99),
            "by_kind": by_kind}


def start_server(model: Path, port: int, temp: Path, log: Path) -> subprocess.Popen:
    import httpx

    env = {**os.environ, "GRADIO_TEMP_DIR": str(temp), "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen(
        [sys.executable, "-m", "imgclf", "serve", str(model), "--port", str(port)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 180
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server stopped: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.kill()
    raise RuntimeError(f"the server did not start: {log.read_text()[-2000:]}")


def main() -> int:
    from tests.serving import colour_photos, probe_model

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--requests", type=int, default=320, help="per concurrency level")
    parser.add_argument("--seconds", type=float, default=45, help="per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="imgclf-load-"))
    photos = colour_photos(folder / "photos")
    model = args.model or probe_model(photos, folder / "model")
    temp = folder / "gradio"
    temp.mkdir()
    port = free_port()
    server = start_server(model, port, temp, folder / "server.log")
    result = {"benchmark": "load", "cpus": os.cpu_count(), "server": "python -m imgclf serve",
              "mix_per_16_requests": {kind: count for kind, (count, _) in MIX.items()}}
    try:
        clients = Clients(f"http://127.0.0.1:{port}", pictures(photos))
        for index in range(4):  # warm-up: the first predictions set up the network's kernels
            clients.send("good", index)
        result["memory_before"] = memory_mb(server.pid)
        for concurrency in args.concurrency:
            level = load(clients, concurrency, args.requests, args.seconds)
            result[f"clients_{concurrency}"] = {**level, "memory_after": memory_mb(server.pid)}
        result["memory_after"] = memory_mb(server.pid)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    result["server_exit_code"] = server.returncode
    result["upload_files_left_after_exit"] = sum(1 for p in temp.rglob("*") if p.is_file())
    shutil.rmtree(folder, ignore_errors=True)
    levels = [result[f"clients_{c}"] for c in args.concurrency]
    result["ok"] = all(level[key] == 0 for level in levels
                       for key in ("5xx", "transport_errors", "unexpected"))
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
