"""What `imgclf predict` does: label pictures on this machine (a row each, as its batch comes
through the network; a CSV table; explanations) or on a Ray cluster (a Parquet or CSV table).

As in commands.py, each stage is imported when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from imgclf._files import atomic_open
from imgclf.cli.commands import model_path, print_error, report_skipped, thresholds
from imgclf.data.sources import expand_paths
from imgclf.errors import ImageError, ImgclfError


def _predict(args: argparse.Namespace) -> int:
    import csv

    from imgclf.inference.prediction import record, table_columns, table_row
    from imgclf.inference.predictor import Predictor

    if args.engine == "ray":
        if args.explain:
            raise ImgclfError("--explain runs here, not on Ray: drop --engine ray, or explain "
                              "a few pictures after the table is written.")
        return _predict_on_ray(args)
    if args.out or args.address or args.actors or args.gpus_per_actor:
        raise ImgclfError("--out, --address, --actors and --gpus-per-actor go with --engine "
                          "ray; here, write a table with --csv FILE.")
    if args.explain and Path(args.explain).exists() and not Path(args.explain).is_dir():
        raise ImgclfError(f"--explain wants a folder to write pictures to; {args.explain} is "
                          "a file.")
    predictor = Predictor.load(model_path(args.model), runtime=args.runtime, int8=args.int8,
                               acceptance=args.acceptance, thresholds=thresholds(args.threshold))
    if args.explain and (predictor.source is None or predictor.source.suffix == ".onnx"):
        raise ImgclfError("--explain needs the .imgclf model file (an .onnx file holds no "
                          "PyTorch network to explain its answers with).")
    paths = expand_paths(args.paths)
    # each row as soon as its batch is through the network (a thread reads the next ones)
    # (a progress bar only while writing a table: a live bar takes over stdout, rows too)
    answers = predictor.predict_each(paths, batch_size=args.batch_size,
                                     show_progress=bool(args.csv) and sys.stderr.isatty())
    results = []
    # --csv and --json keep every file: an unreadable one is a row with its error
    if args.csv:
        with atomic_open(args.csv, newline="") as handle:
            writer = csv.DictWriter(handle, table_columns(predictor.classes))
            writer.writeheader()
            for position, result in answers:
                results.append(result)
                writer.writerow(_csv_cells(table_row(predictor.classes, paths[position],
                                                     result)))
    for position, result in answers if not args.csv else ():
        results.append(result)
        if args.json:
            print(json.dumps(record(paths[position], result, top_k=args.top_k)), flush=True)
        elif not isinstance(result, ImageError):
            print(f"{paths[position]}\t{result.describe(args.top_k)}", flush=True)
    good = [result for result in results if not isinstance(result, ImageError)]
    if args.csv:
        print(f"Wrote {len(good)} predictions to {args.csv}"
              + (f" ({len(results) - len(good)} unreadable file(s) with their error)"
                 if len(good) < len(results) else ""))
    if not predictor.has_detector:
        print("This model file has no detector for unknown pictures (made before imgclf 0.2): "
              "every picture gets one of its classes. Train it again to get one.",
              file=sys.stderr)
    report_skipped([r for r in results if isinstance(r, ImageError)])
    if not good:
        print_error("No picture could be read; nothing was predicted.")
        return 1
    if args.explain:
        _write_explanations(predictor, [path for path, result in zip(paths, results)
                                        if not isinstance(result, ImageError)],
                            Path(args.explain))
    return 0


def _write_explanations(predictor, paths: list[Path], folder: Path) -> None:
    """predict --explain: one PNG per picture, named after it (a repeated name gets its
    position in front)."""
    from imgclf._progress import progress

    folder.mkdir(parents=True, exist_ok=True)
    names: set[str] = set()
    written = 0
    for path in progress(paths, total=len(paths), description="Explaining",
                         enabled=sys.stderr.isatty()):
        name, copy = f"{Path(path).stem}.png", 1
        while name in names:  # a second photo.jpg: photo-2.png (never another's name)
            copy += 1
            name = f"{Path(path).stem}-{copy}.png"
        names.add(name)
        try:
            predictor.explain(path).save(folder / name)
            written += 1
        except ImageError as error:  # changed since it was predicted
            print(f"Skipped {path}: {error.reason}", file=sys.stderr)
    print(f"Wrote {written} explanation(s) to {folder}", file=sys.stderr)


def _predict_on_ray(args: argparse.Namespace) -> int:
    from imgclf.inference.ray_batch import predict_dataset

    if not args.out:
        raise ImgclfError("--engine ray writes a table: give --out predictions.parquet (or "
                          ".csv, or a folder or s3:// path for Parquet parts).")
    if (args.int8 or args.json or args.csv or args.acceptance is not None or args.top_k != 1
            or args.threshold):
        raise ImgclfError("--engine ray takes --out, --runtime, --batch-size, --actors, "
                          "--gpus-per-actor and --address; export an int8 ONNX file "
                          "(imgclf export --onnx F --int8) and give it as the model for int8.")
    written = predict_dataset(model_path(args.model), args.paths, out=args.out,
                              batch_size=args.batch_size, actors=args.actors,
                              gpus_per_actor=args.gpus_per_actor, address=args.address,
                              runtime=args.runtime)
    if isinstance(written, Path) and written.is_file():
        import pandas

        table = (pandas.read_csv(written, usecols=["error"]) if written.suffix.lower() == ".csv"
                 else pandas.read_parquet(written, columns=["error"]))
        failed = int(table["error"].notna().sum())
        print(f"Wrote {len(table) - failed} predictions to {written}"
              + (f" ({failed} unreadable file(s) with their error)" if failed else ""))
    else:
        print(f"Wrote the predictions as Parquet parts under {written}")
    return 0


def _csv_cells(row: dict) -> dict:
    """A table row as CSV cells: 4 decimals, 0/1 for the unknown flag, empty for None."""
    return {key: "" if value is None else int(value) if isinstance(value, bool)
            else f"{value:.4f}" if isinstance(value, float) else value
            for key, value in row.items()}
