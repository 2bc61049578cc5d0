"""The model file: safetensors weights with imgclf's JSON metadata in the same header.

One file, readable by any safetensors tool, never unpickled. The metadata says everything
needed to rebuild the network and use it offline (backbone, input config, classes, head) plus
what it scored and how it was trained. A checksum over the tensors catches damage and edits.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from imgclf.errors import ModelFileError

FORMAT = "imgclf"
FORMAT_VERSION = 1
SUFFIX = ".imgclf"


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor],
                 metadata: dict[str, Any]) -> Path:
    """Write tensors and metadata atomically (a crash mid-write never leaves a broken file)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    header = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "checksum": _checksum(tensors),
        "metadata": json.dumps(metadata, default=str),
    }
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(temporary), metadata=header)
    os.replace(temporary, path)
    return path


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and check a file written by save_tensors.

    Raises:
        ModelFileError: missing, truncated, not an imgclf file, from a newer imgclf, or its
            tensors do not match the checksum written with them.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"Model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as error:  # noqa: BLE001 - safetensors raises several types
        raise ModelFileError(
            f"{path} is not a readable model file: it is damaged (truncated download?) or not "
            f"a safetensors file ({error})") from None
    if header.get("format") != FORMAT:
        raise ModelFileError(f"{path} is a safetensors file but not an imgclf model file "
                             "(no imgclf metadata). Export models with Learner.export().")
    version = int(header.get("format_version", "0"))
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path} was written by a newer imgclf (format {version}; this one "
                             f"reads up to {FORMAT_VERSION}): pip install -U imgclf")
    if header.get("checksum") != _checksum(tensors):
        raise ModelFileError(f"{path} is damaged or was modified after it was saved: its "
                             "weights do not match their checksum.")
    try:
        metadata = json.loads(header["metadata"])
    except (KeyError, ValueError) as error:
        raise ModelFileError(f"{path}: its metadata is not valid JSON ({error})") from None
    return tensors, metadata


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
