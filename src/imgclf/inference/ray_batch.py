"""Batch prediction on Ray: millions of pictures, the model loaded once per actor.

``predict_dataset(model, source, out=...)`` reads pictures with Ray Data
(``read_binary_files``: a local folder or files, or any path Ray reads, s3://, gs://, ...),
labels them batch by batch in actors that each load the model file once (``map_batches``, on
CPU or GPU actors), and writes the table ``imgclf predict --csv`` writes, one row per file:
path, label, index, probability, unknown, outlier_score, one column per class, error. A file
that cannot be read is a row with its error, never a failed job.

Where it runs: on the cluster ``address`` names (or RAY_ADDRESS), else on a Ray started on
this machine. Each actor runs the one inference path (``Predictor.predict_batch``), so its
answers are single-process ``imgclf predict``'s.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgclf._files import atomic_path
from imgclf._progress import console
from imgclf.config import InferenceConfig
from imgclf.data.sources import expand_paths
from imgclf.errors import ImageError
from imgclf.inference.prediction import table_columns, table_row
from imgclf.inference.predictor import Predictor
from imgclf.inference.runtimes import load_onnx, require
from imgclf.modelfile import load_model

if TYPE_CHECKING:
    import pandas

RAY_HINT = "Prediction on Ray needs the ray extra: pip install 'imgclf[ray]'"
# Schemes that name remote storage: passed to Ray as they are, not looked up on this disk.
_REMOTE = ("s3://", "gs://", "gcs://", "abfs://", "az://", "hdfs://", "http://", "https://")


def predict_dataset(model: str | os.PathLike, source: str | os.PathLike | Sequence[Any], *,
                    out: str | os.PathLike | None = None,
                    batch_size: int = InferenceConfig.batch_size,
                    actors: int | None = None, gpus_per_actor: float = 0,
                    address: str | None = None, runtime: str = InferenceConfig.runtime,
                    show_progress: bool = True) -> pandas.DataFrame | Path:
    """Label every picture under ``source`` on Ray (see the module's docstring).

    Args:
        model: a model file (.imgclf, or an .onnx file from ``imgclf export``) on this
            machine; it is sent to the actors, so they need no shared disk.
        source: a folder, file or list of them, or remote paths Ray reads (s3://bucket/dir).
            On a cluster of several machines, local paths must be readable on every node
            (a shared disk); otherwise put the pictures where Ray reads them (s3://...).
        out: a .parquet or .csv file to write (rows in the order of the files); any other
            path or a remote one gets Ray's folder of Parquet parts, written by the actors.
            None: return a pandas DataFrame.
        actors: how many actors predict at once (default: Ray's choice, up to the CPUs).
        gpus_per_actor: GPUs each actor holds (e.g. 1 on GPU nodes; 0: CPU actors); a GPU
            actor runs the network in PyTorch on its GPU.
        address: the Ray cluster to use ("ray://host:10001", "auto"); default RAY_ADDRESS,
            else a local Ray.

    Example:
        >>> imgclf.predict_dataset("models/ants/model.imgclf", "s3://bucket/photos",
        ...                        out="predictions.parquet", address="auto")
    """
    ray = require("ray", RAY_HINT)
    model = Path(model)
    # a bad model file fails here, before any cluster work (no network is built: the actors do)
    classes = list((load_onnx(model) if model.suffix == ".onnx" else load_model(model))[1].classes)
    files, missing, listed = _files(source)
    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS"),
                 include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    # Ray Data's own bars where someone watches; no INFO lines about its execution in logs
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # rows in the order of the files
    context.enable_progress_bars = show_progress and sys.stderr.isatty()
    frames = [_error_frame(missing, classes)] if missing else []
    if files:
        dataset = ray.data.read_binary_files(files, include_paths=True).map_batches(
            _Labeller, fn_constructor_kwargs={"model": model.read_bytes(),
                                              "suffix": model.suffix, "runtime": runtime,
                                              "gpu": gpus_per_actor > 0},
            batch_size=batch_size, batch_format="pandas", num_gpus=gpus_per_actor,
            compute=ray.data.ActorPoolStrategy(
                min_size=1, max_size=actors or max(1, int(ray.available_resources().get("CPU",
                                                                                        1)))))
        if out is not None and not _single_file(out):
            return _write_parts(dataset, str(out), missing)
        frames.extend(batch for batch in dataset.iter_batches(batch_format="pandas",
                                                              batch_size=None))
    table = _in_order(_concat(frames, classes), listed)
    if out is None:
        return table
    return _write_file(table, Path(out))


class _Labeller:
    """A Ray actor: the model loaded once, then a batch of (path, bytes) -> table rows."""

    def __init__(self, model: bytes, suffix: str, runtime: str, gpu: bool):
        import torch

        with tempfile.TemporaryDirectory(prefix="imgclf-actor-") as folder:
            path = Path(folder) / f"model{suffix}"
            path.write_bytes(model)  # read whole by the loader: the folder can go
            if gpu and suffix != ".onnx" and torch.cuda.is_available():  # a GPU actor
                self.predictor = Predictor.load(path, runtime="torch")
                self.predictor.network.to("cuda")
            else:
                self.predictor = Predictor.load(path, runtime=runtime)

    def __call__(self, batch: pandas.DataFrame) -> pandas.DataFrame:
        import pandas

        sources = [bytes(content) for content in batch["bytes"]]
        results = self.predictor.predict_batch(sources, num_workers=0, show_progress=False)
        classes = self.predictor.classes
        rows = [table_row(classes, path, result) for path, result in zip(batch["path"], results)]
        return _typed(pandas.DataFrame(rows, columns=table_columns(classes)))


def _typed(table: pandas.DataFrame) -> pandas.DataFrame:
    """The same column types in every part, whether or not it holds errors (empty cells)."""
    return table.astype({"path": "string", "label": "string", "index": "Int64",
                         "probability": "Float64", "unknown": "boolean",
                         "outlier_score": "Float64", "error": "string",
                         **{name: "Float64" for name in table.columns[6:-1]}})


def _files(source: str | os.PathLike | Sequence[Any]
           ) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """(what Ray reads, [(path, why not)] for local paths that are no readable file, every
    local file in the order listed)."""
    sources = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    files, missing, listed = [], [], []
    for entry in map(str, sources):
        if entry.startswith(_REMOTE):
            files.append(entry)
            continue
        for file in expand_paths([entry]):
            name = str(file.absolute())
            listed.append(name)
            if file.is_file() and os.access(file, os.R_OK):
                files.append(name)
            else:
                missing.append((name, "cannot be read (a broken link, or no permission)"))
    return files, missing, listed


def _error_frame(missing: list[tuple[str, str]], classes: list[str]) -> pandas.DataFrame:
    import pandas

    rows = [table_row(classes, path, ImageError(path, reason)) for path, reason in missing]
    return _typed(pandas.DataFrame(rows, columns=table_columns(classes)))


def _concat(frames: list[pandas.DataFrame], classes: list[str]) -> pandas.DataFrame:
    import pandas

    frames = [frame for frame in frames if len(frame)]
    if not frames:
        return pandas.DataFrame(columns=table_columns(classes))
    return pandas.concat(frames, ignore_index=True)


def _in_order(table: pandas.DataFrame, listed: list[str]) -> pandas.DataFrame:
    """Rows in the order the local files were listed, unreadable ones in their place (the
    files of a remote folder, which Ray lists, after them in Ray's order)."""
    position = {path: index for index, path in enumerate(listed)}
    order = table["path"].map(position).fillna(len(position))
    return table.iloc[order.argsort(kind="stable")].reset_index(drop=True)


def _single_file(out: str | os.PathLike) -> bool:
    return not str(out).startswith(_REMOTE) and Path(out).suffix.lower() in (".parquet", ".csv")


def _write_file(table: pandas.DataFrame, out: Path) -> Path:
    """One Parquet or CSV file, written atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as temporary:
        if out.suffix.lower() == ".csv":  # cells as `imgclf predict --csv` writes them
            table.assign(unknown=table["unknown"].astype("Int8")).to_csv(
                temporary, index=False, float_format="%.4f")
        else:
            table.to_parquet(temporary, index=False)
    return out


def _write_parts(dataset: Any, out: str, missing: list[tuple[str, str]]) -> Path | str:
    """Ray's own writer: a folder (or remote prefix) of Parquet parts, written by the actors.
    Local files that could not be opened have no part: they are named here instead."""
    if missing:
        names = ", ".join(path for path, _ in missing[:3])
        console().print(f"{len(missing)} file(s) could not be opened and have no row: {names}"
                        + (", ..." if len(missing) > 3 else ""), style="yellow", markup=False)
    dataset.write_parquet(out)
    return out if out.startswith(_REMOTE) else Path(out)
