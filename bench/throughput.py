"""How fast the backbone's forward pass runs on this CPU in each runtime, against the CPU's peak.

For the default backbone (EfficientNet-Lite0) at the training size (224) and the probe size
(288), batch 1 and 32: pictures/second in PyTorch eager (channels_last, inference mode),
torch.compile, ONNX Runtime, ONNX Runtime with post-training static int8 quantization
(imgclf.quantize's, calibrated on 64 hymenoptera photos) and OpenVINO (each skipped, with the reason, when it is
not installed or fails); the forward pass's GFLOP/s (FLOPs counted by torch.utils.flop_counter)
and its share of the peak assumed for this CPU (cores x 32 single-precision FLOPs per cycle,
two 256-bit FMA units, at the clock /proc/cpuinfo reports); single-picture latency p50/p99
through Predictor (decode included) with PyTorch, onnxruntime (the default) and int8. Every
runtime's pooled embeddings are checked against PyTorch's: the largest difference on random
input, the lowest cosine similarity on 16 photos. Prints one JSON line.

Run: python bench/throughput.py [--seconds 4] [--runtimes torch,onnxruntime,openvino,compile]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from backbone_speed import images_per_second as rate  # bench/: the same timing loop
from imgclf.config import DEFAULT_BACKBONE
from imgclf.model import Classifier

RUNTIMES = ("torch", "compile", "onnxruntime", "onnxruntime-int8", "openvino")
# torch.compile is opt-in (--runtimes): measured once at 224 px it gained 1.2x over eager, and
# at 288 px, compiled after 224, it ran past a 15-minute limit.
DEFAULT_RUNTIMES = ("torch", "onnxruntime", "onnxruntime-int8", "openvino")


class Pooled(torch.nn.Module):
    """The backbone's average-pooled features: what embeddings and the probe's head use."""

    def __init__(self, network: Classifier):
        super().__init__()
        self.backbone = network.backbone

    def forward(self, images):
        return self.backbone.forward_features(images).mean(dim=(2, 3))


def build(runtime: str, module: torch.nn.Module, size: int, folder: Path):
    """A function numpy batch -> numpy embeddings, for one runtime."""
    if runtime in ("torch", "compile"):
        network = module.eval().to(memory_format=torch.channels_last)
        if runtime == "compile":
            network = torch.compile(network)

        def run(batch):
            with torch.inference_mode():
                images = torch.from_numpy(batch).to(memory_format=torch.channels_last)
                return network(images).numpy()
        return run
    # the graph imgclf runs by default (onnx_runtime.cached_graph: TorchScript export, "same"
    # padding folded into the convolutions), and imgclf.quantize's int8 version of it
    from imgclf.inference.runtimes import cached_graph

    path = cached_graph(module, size, embeddings_only=True, show_progress=False)
    if runtime == "onnxruntime-int8":
        from imgclf.inference.int8 import _quantize_file

        target = folder / f"int8_{size}.onnx"
        _quantize_file(path, target, real_pictures(size), show_progress=False)
        path = target
    if runtime.startswith("onnxruntime"):
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda batch: session.run(None, {"images": batch})[0]
    import openvino

    compiled = openvino.Core().compile_model(str(path), "CPU")
    return lambda batch: compiled(batch)[0]


def real_pictures(size: int, count: int = 64) -> np.ndarray:
    """Hymenoptera's first training photos as the model reads them (random ones without it)."""
    from dataclasses import replace

    from PIL import Image

    from imgclf.backbones import input_config
    from imgclf.data.transforms import eval_transform

    folder = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "hymenoptera"
    paths = sorted(folder.glob("train/*/*.jpg"))[:count]
    if not paths:
        return np.random.default_rng(3).standard_normal((count, 3, size, size)).astype(np.float32)
    transform = eval_transform(replace(input_config(DEFAULT_BACKBONE), image_size=size))
    return np.stack([transform(Image.open(p).convert("RGB")) for p in paths])


def peak_gflops() -> tuple[float, str]:
    cores = os.cpu_count() or 1
    mhz = 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                mhz = max(mhz, float(line.split(":")[1]))
    except OSError:
        pass
    ghz = mhz / 1000 or 2.0
    return cores * 32 * ghz, (f"{cores} cores x 32 FLOP/cycle (two 256-bit FMA units) x "
                              f"{ghz:.2f} GHz")


def flops(module: torch.nn.Module, size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        module(torch.randn(1, 3, size, size))
    return float(counter.get_total_flops())


def predictor_latency(seconds: float) -> dict:
    """p50/p99 of Predictor.predict on one JPEG (bytes), a probe model file on generated
    photos, loaded with each runtime and timed in turn (interleaved: the machine's load hits
    both alike)."""
    from PIL import Image

    from imgclf import ImageData, Predictor, quantize, train

    work = Path(tempfile.mkdtemp(prefix="imgclf-throughput-"))
    rng = np.random.default_rng(0)
    for label, tint in (("red", (180, 20, 20)), ("blue", (20, 20, 180))):
        (work / label).mkdir()
        for index in range(8):
            pixels = np.clip(rng.integers(0, 70, (300, 400, 3)) + np.array(tint), 0, 255)
            Image.fromarray(pixels.astype("uint8")).save(work / label / f"{index}.jpg")
    data = ImageData.from_folder(work, image_size=224, num_workers=0, verbose=False)
    model = train(data, mode="probe", verbose=False).export(work / "model.imgclf")
    predictors = {runtime: Predictor.load(model, runtime=runtime) for runtime in ("torch", "onnx")}
    if quantize(model, data, show_progress=False).accepted:
        predictors["int8"] = Predictor.load(model, int8=True)
    photo = (work / "red" / "0.jpg").read_bytes()
    times: dict[str, list[float]] = {runtime: [] for runtime in predictors}
    for predictor in predictors.values():
        for _ in range(5):
            predictor.predict(photo)
    start = time.perf_counter()
    while time.perf_counter() - start < 2 * seconds or len(times["torch"]) < 30:
        for runtime, predictor in predictors.items():
            begin = time.perf_counter()
            predictor.predict(photo)
            times[runtime].append((time.perf_counter() - begin) * 1000)
    return {runtime: {"image_size": 224, "p50_ms": round(statistics.median(values), 1),
                      "p99_ms": round(float(np.percentile(values, 99)), 1),
                      "calls": len(values)} for runtime, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--runtimes", default=",".join(DEFAULT_RUNTIMES),
                        help=f"any of {', '.join(RUNTIMES)}")
    args = parser.parse_args()
    # the graphs this builds go to a cache of its own, not the user's
    os.environ.setdefault("IMGCLF_CACHE", tempfile.mkdtemp(prefix="imgclf-throughput-cache-"))
    torch.manual_seed(0)
    module = Pooled(Classifier.create(DEFAULT_BACKBONE, 2)).eval()
    peak, assumption = peak_gflops()
    result = {"benchmark": "throughput", "backbone": DEFAULT_BACKBONE, "cpus": os.cpu_count(),
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "peak_gflops": round(peak, 1), "peak_assumed": assumption, "runs": []}
    folder = Path(tempfile.mkdtemp(prefix="imgclf-onnx-"))
    for size in (224, 288):
        picture_flops = flops(module, size)
        reference = None
        for runtime in args.runtimes.split(","):
            row = {"runtime": runtime, "image_size": size,
                   "gflop_per_picture": round(picture_flops / 1e9, 3)}
            try:
                run = build(runtime, module, size, folder)
                probe = np.random.default_rng(1).standard_normal((4, 3, size, size)) \
                    .astype(np.float32)
                embeddings = run(probe)
                if runtime == "torch":
                    reference = embeddings
                    reference_real = run(real_pictures(size, 16))
                elif reference is not None:
                    row["max_difference"] = float(np.abs(embeddings - reference).max())
                    # on photos: how far each embedding turns from PyTorch's (1 = the same)
                    ours = run(real_pictures(size, 16))
                    row["cosine_min"] = round(float(np.min(
                        (ours * reference_real).sum(axis=1) / np.linalg.norm(ours, axis=1)
                        / np.linalg.norm(reference_real, axis=1))), 5)
                for batch_size in (1, 32):
                    batch = np.random.default_rng(2).standard_normal(
                        (batch_size, 3, size, size)).astype(np.float32)
                    pictures = rate(run, batch, args.seconds)
                    gflops = pictures * picture_flops / 1e9
                    row[f"batch_{batch_size}"] = {
                        "pictures_per_second": round(pictures, 1),
                        "gflops": round(gflops, 1), "share_of_peak": round(gflops / peak, 3)}
            except Exception as error:  # noqa: BLE001 - a runtime missing or failing is a result
                row["skipped"] = f"{type(error).__name__}: {str(error)[:200]}"
            result["runs"].append(row)
            print(json.dumps(row), flush=True, file=sys.stderr)
    result["predictor"] = predictor_latency(args.seconds)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
