"""Training on several devices: one process per device, data-parallel, launched by torchrun.

``imgclf train DATA --devices N`` starts N copies of itself through PyTorch's own launcher
(``python -m torch.distributed.run``, "torchrun"); a script that calls ``train()`` runs the
same way under ``torchrun --nproc_per_node N script.py``. Each process trains on its share of
every batch: the single-process batch, split N ways, so the pictures, their augmentation and
the schedule are those of one process, and DistributedDataParallel averages the gradients
(NCCL between GPUs, gloo between CPU processes). Every process validates (the same weights
give the same figures, so they take the same decisions); only the first writes checkpoints,
the model, the history and the report.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imgclf.errors import ImgclfError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Processes:
    """This process's place among the training processes: rank 0 of 1 when alone."""

    rank: int = 0
    count: int = 1
    local_rank: int = 0  # which of this machine's devices it drives

    @property
    def main(self) -> bool:
        """The process that writes (and prints)."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.count > 1


# How long a process waits for the others at a meeting point: the first process embeds every
# picture for the probe while the rest wait (NCCL's own default is 10 minutes).
WAIT = datetime.timedelta(hours=2)


def resolve_device(name: str | None) -> torch.device:
    """The device asked for, or the fastest present: CUDA, then Apple's MPS, then the CPU."""
    import torch

    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def processes(*, cuda: bool = False) -> Processes:
    """Processes() alone; under torchrun (WORLD_SIZE > 1) the process group is joined on the
    first call: NCCL when training on GPUs (cuda), else gloo."""
    import torch
    import torch.distributed as distributed

    count = int(os.environ.get("WORLD_SIZE", "1"))
    if count <= 1:
        return Processes()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not distributed.is_initialized():
        if cuda:
            torch.cuda.set_device(local_rank)
        distributed.init_process_group("nccl" if cuda else "gloo", timeout=WAIT)
    return Processes(distributed.get_rank(), distributed.get_world_size(), local_rank)


def device_of(processes: Processes, device: torch.device) -> torch.device:
    """The device a process trains on: its own GPU when there are several processes."""
    import torch

    if processes.parallel and device.type == "cuda":
        return torch.device("cuda", processes.local_rank)
    return device


def launch(arguments: list[str], devices: int, *, cpu: bool = False) -> int:
    """Run ``imgclf ARGUMENTS`` in `devices` processes under torchrun; its exit status.

    cpu: the processes train on the CPU even where there are GPUs (--device cpu)."""
    import torch

    if not cpu and torch.cuda.is_available() and devices > torch.cuda.device_count():
        raise ImgclfError(f"--devices {devices}: this machine has "
                          f"{torch.cuda.device_count()} GPU(s). Use at most that many, or "
                          "--device cpu for processes sharing the CPU.")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if (cpu or not torch.cuda.is_available()) and devices > (cores or 1):
        raise ImgclfError(f"--devices {devices}: processes on the CPU share its {cores} "
                          f"core(s), so at most {cores} can each have one (and one process "
                          "uses them all already). Use --devices 1 here, or GPUs.")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={devices}", "-m", "imgclf", *arguments]
    environment = dict(os.environ)
    if not torch.cuda.is_available():  # CPU processes share the cores instead of fighting
        environment.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // devices)))
    return subprocess.call(command, env=environment)


def all_agree(processes: Processes, flag: bool) -> bool:
    """True only where every process says True (a step all must take, or none)."""
    if not processes.parallel:
        return flag
    import torch.distributed as distributed

    tensor = _exchanged(1.0 if flag else 0.0)
    distributed.all_reduce(tensor, op=distributed.ReduceOp.MIN)
    return bool(tensor.item())


def agree(processes: Processes, value: float) -> float:
    """The first process's value, in every process (a decision all must take alike)."""
    if not processes.parallel:
        return value
    import torch.distributed as distributed

    tensor = _exchanged(value)
    distributed.broadcast(tensor, src=0)
    return float(tensor.item())


def _exchanged(value: float) -> torch.Tensor:
    """A one-number tensor where the process group's backend exchanges it (NCCL: the GPU)."""
    import torch
    import torch.distributed as distributed

    device = "cuda" if distributed.get_backend() == "nccl" else "cpu"
    return torch.tensor([float(value)], dtype=torch.float64, device=device)


@contextlib.contextmanager
def main_first(processes: Processes):
    """The first process runs the block before the others (it fills a cache they then read)."""
    import torch.distributed as distributed

    if processes.parallel and not processes.main:
        distributed.barrier()
    yield
    if processes.parallel and processes.main:
        distributed.barrier()


def parallel_module(processes: Processes, module: torch.nn.Module) -> torch.nn.Module:
    """The module wrapped in DistributedDataParallel when there are several processes (its
    trainable parameters' gradients averaged across them), else the module itself."""
    if not processes.parallel:
        return module
    from torch.nn.parallel import DistributedDataParallel

    device = next(module.parameters()).device
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda"
                                   else None)
