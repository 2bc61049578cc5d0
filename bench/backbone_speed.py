"""Forward-pass images/second of each offline backbone at its native input size, on this CPU.

Prints one JSON line. Run: python bench/backbone_speed.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from imgclf.backbones import create_backbone, input_config, offline_backbones


def images_per_second(network, batch: torch.Tensor, seconds: float) -> float:
    with torch.inference_mode():
        start = time.perf_counter()
        while time.perf_counter() - start < 1.0:  # warm-up: first calls allocate, pick kernels
            network(batch)
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds or done < 3 * len(batch):
            network(batch)
            done += len(batch)
        return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="timing per measurement")
    args = parser.parse_args()
    results = {}
    for name in offline_backbones():
        network = create_backbone(name).eval()
        size = input_config(network).image_size
        row = {"image_size": size}
        for batch_size in (1, 32):
            batch = torch.randn(batch_size, 3, size, size)
            row[f"batch{batch_size}"] = round(images_per_second(network, batch, args.seconds), 1)
            row[f"batch{batch_size}_channels_last"] = round(images_per_second(
                network.to(memory_format=torch.channels_last),
                batch.contiguous(memory_format=torch.channels_last), args.seconds), 1)
            network = network.to(memory_format=torch.contiguous_format)
        results[name] = row
    print(json.dumps({
        "benchmark": "backbone_speed", "unit": "images/second", "backbones": results,
        "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "torch": torch.__version__, "machine": platform.machine(),
    }))


if __name__ == "__main__":
    main()
