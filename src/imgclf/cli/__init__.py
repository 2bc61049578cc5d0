"""Command line: each command parses its arguments, calls one library function and formats.

This module holds the parser (every command, option and default); ``commands.py`` holds what
each command does, but `predict`, which ``predicting.py`` holds.
"""

from __future__ import annotations

import argparse
import math
import sys

from imgclf._files import safe_streams
from imgclf._version import __version__
from imgclf.cli import commands as handlers
from imgclf.cli import predicting
from imgclf.cli.commands import print_error
from imgclf.config import (AUGMENT_POLICIES, DEFAULT_BACKBONE, PRECISIONS, RESIZE_METHODS,
                           RUNTIMES, TRAIN_MODES, AugmentConfig, CleanConfig, CollectConfig,
                           DataConfig, HeadConfig, InferenceConfig, ServeConfig, TrainConfig)
from imgclf.errors import ImgclfError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    safe_streams()  # a file name that is not UTF-8 prints as \xXX instead of failing
    parser = _parser()
    args = parser.parse_args(argv)
    args.arguments = list(sys.argv[1:] if argv is None else argv)  # --devices relaunches them
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except ImgclfError as error:
        print_error(str(error))
        return 1
    except KeyboardInterrupt:
        print_error("Interrupted.")
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imgclf", description="Train, evaluate and serve image classifiers.")
    parser.add_argument("--version", action="version", version=f"imgclf {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    backbones = commands.add_parser(
        "backbones", help="list backbones, their size, ImageNet accuracy and offline availability")
    backbones.add_argument("--json", action="store_true", help="print JSON lines instead")
    backbones.set_defaults(run=handlers._backbones, command="backbones")

    cache = commands.add_parser(
        "cache", help="what imgclf keeps in its cache ($IMGCLF_CACHE or ~/.cache/imgclf), "
        "and clearing it")
    cache.add_argument("--clear", nargs="*", metavar="KIND",
                       help="delete these kinds (copies, views, embeddings, runtimes, verdicts; "
                       "all five when none is named): each is rebuilt when next needed")
    cache.set_defaults(run=handlers._cache, command="cache")

    imagenet = commands.add_parser(
        "imagenet", help="classify photos into the 1000 ImageNet classes (checks a backbone)")
    imagenet.add_argument("paths", nargs="+", help="image files or folders")
    imagenet.add_argument("--backbone", default=DEFAULT_BACKBONE)
    imagenet.add_argument("--top-k", type=int, default=1, help="classes to show per photo")
    imagenet.add_argument("--batch-size", type=int, default=InferenceConfig.batch_size)
    imagenet.add_argument("--json", action="store_true", help="print JSON lines instead")
    imagenet.set_defaults(run=handlers._imagenet, command="imagenet")

    collect = commands.add_parser(
        "collect", help="build class folders from web image search, with a licence manifest",
        description='Example: imgclf collect --out data/cats "house_cat=house cat,tabby cat" '
                    '"wild_cat=lion,tiger,leopard,wild cat" --per-class 150')
    collect.add_argument("classes", nargs="+", metavar="CLASS=QUERY[,QUERY...]",
                         help="one class per argument; its queries are merged into one folder")
    collect.add_argument("--out", required=True, help="dataset folder (class folders go inside)")
    collect.add_argument("--per-class", type=int, default=CollectConfig.per_class,
                         help="pictures to have in each class folder")
    collect.add_argument("--provider", default=None,
                         help="provider or comma-separated fallback chain: duckduckgo, openverse, "
                              "wikimedia, pexels, unsplash, pixabay, flickr, serpapi (default: "
                              "the keyless three, then keyed ones whose key is set)")
    collect.add_argument("--max-side", type=int, default=CollectConfig.max_side,
                         help="shrink larger pictures to this longer side (0 keeps originals)")
    collect.add_argument("--max-megabytes", type=float, default=CollectConfig.max_megabytes,
                         help="abandon downloads larger than this")
    collect.add_argument("--workers", type=int, default=CollectConfig.workers,
                         help="downloads at once")
    collect.add_argument("--timeout", type=float, default=CollectConfig.timeout,
                         help="seconds to wait for a server")
    collect.set_defaults(run=handlers._collect, command="collect")

    imports = commands.add_parser("import", help="import a Kaggle or Hugging Face dataset")
    sources = imports.add_subparsers(title="sources", metavar="SOURCE")
    kaggle = sources.add_parser("kaggle", help="a Kaggle dataset, OWNER/DATASET")
    kaggle.add_argument("dataset", help="OWNER/DATASET, e.g. alxmamaev/flowers-recognition")
    kaggle.add_argument("--out", required=True, help="folder to unzip it into")
    kaggle.set_defaults(run=handlers._import_kaggle, command="import kaggle")
    hub = sources.add_parser("huggingface", help="a Hugging Face image dataset, as class folders")
    hub.add_argument("name", help="Hub dataset name (e.g. beans) or a save_to_disk folder")
    hub.add_argument("--out", required=True, help="folder for the class folders")
    hub.add_argument("--split", default=None, help="only this split (default: all)")
    hub.add_argument("--image-column", default=None, help="default: the Image feature")
    hub.add_argument("--label-column", default=None, help="default: the ClassLabel feature")
    hub.set_defaults(run=handlers._import_huggingface, command="import huggingface")

    data = commands.add_parser(
        "data", help="check a dataset: counts per class, skipped, suspicious and leaked files")
    _add_data_arguments(data)
    data.set_defaults(run=handlers._data, command="data")

    show = commands.add_parser("show-batch", help="save a picture of a batch as the network sees it")
    _add_data_arguments(show)
    show.add_argument("--n", type=int, default=8, help="pictures to show")
    show.add_argument("--augment", action="store_true", help="show training augmentation")
    show.add_argument("--split", default="train", choices=["train", "valid", "test"])
    show.add_argument("--out", default="batch.png", help="PNG file to write")
    _add_augment_arguments(show)
    show.set_defaults(run=handlers._show_batch, command="show-batch")

    finder = commands.add_parser(
        "lr-find", help="train briefly at rising learning rates: plot the loss, suggest a rate")
    _add_data_arguments(finder)
    finder.add_argument("--whole-network", action="store_true",
                        help="train the whole network (the rate of fine-tuning's later epochs, "
                             "--learning-rate); default: the head alone (--head-learning-rate)")
    finder.add_argument("--steps", type=int, default=100, help="training steps at most")
    finder.add_argument("--out", default="lr_find.png", help="PNG file for the plot")
    finder.set_defaults(run=handlers._lr_find, command="lr-find")

    train = commands.add_parser("train", help="fine-tune a backbone on labelled pictures")
    _add_data_arguments(train, split_from_run=True)
    _add_augment_arguments(train)
    train.add_argument("--epochs", type=int, default=TrainConfig.epochs,
                       help="whole-network epochs (default: 6 in auto mode, fitted to the "
                       "time limit; 4 in fine_tune)")
    train.add_argument("--freeze-epochs", type=int, default=TrainConfig.freeze_epochs,
                       help="head-only epochs first")
    train.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate,
                       help="peak rate of the head when the whole network trains")
    train.add_argument("--head-learning-rate", type=float,
                       default=TrainConfig.head_learning_rate,
                       help="peak rate of the head-only epochs")
    train.add_argument("--label-smoothing", type=float, default=TrainConfig.label_smoothing)
    train.add_argument("--pool", default=HeadConfig.pool, choices=["avg", "concat"],
                       help="head pooling")
    train.add_argument("--monitor", default=TrainConfig.monitor,
                       choices=["valid_loss", "accuracy", "error_rate"],
                       help="which validation figure picks the best epoch")
    train.add_argument("--patience", type=int, default=TrainConfig.patience,
                       help="auto mode: stop after this many complete whole-network "
                            "schedules that end no better than the best point (0: run them "
                            "all, even after a probe that leaves too little to gain)")
    train.add_argument("--time-limit", type=duration, default=TrainConfig.time_limit,
                       metavar="TIME",
                       help="how long the whole run may take, e.g. 90s, 10m, 1h (whole-network "
                            "epochs are planned to fit; 0: no limit; default: 10m for auto "
                            "mode on the CPU, else none)")
    train.add_argument("--restore-best", action="store_true",
                       help="end with the best epoch's weights, not the last")
    train.add_argument("--device", default=None, help="cpu, cuda or mps (default: fastest)")
    train.add_argument("--precision", default=TrainConfig.precision, choices=PRECISIONS,
                       help="arithmetic of training steps (auto: bfloat16 where the device "
                            "has it and it pays; never where it has not)")
    train.add_argument("--freeze-early", default=None, action=argparse.BooleanOptionalAction,
                       help="keep the backbone's early layers frozen while the whole network "
                            "trains (default: on a CPU, yes; on a GPU, no)")
    train.add_argument("--frozen-runtime", default=TrainConfig.frozen_runtime,
                       choices=RUNTIMES,
                       help="what runs the frozen early layers: auto (default: onnxruntime "
                            "on a CPU where installed, 4.6x PyTorch there), torch, or onnx "
                            "(see docs/training.md#speed)")
    train.add_argument("--reuse-views", default=None, action=argparse.BooleanOptionalAction,
                       help="with frozen early layers (auto on a CPU), half the whole-network "
                            "epochs train again on stored pictures, the last never (the "
                            "default; faster, see docs/training.md#speed); "
                            "--no-reuse-views reads every epoch's pictures")
    train.add_argument("--progressive-resizing", action="store_true",
                       help="train whole-network epochs but the last on smaller crops "
                            "(faster; it cost accuracy on blood-cells)")
    train.add_argument("--out", default=None, help="output folder (default: models/<data name>)")
    train.add_argument("--mode", default=TrainConfig.mode, choices=TRAIN_MODES,
                       help="auto (default): probe for tiny data, else probe then fine-tune, "
                            "keeping the better; probe: a head on cached embeddings, in "
                            "seconds; fine_tune: head epochs, then the whole network")
    train.add_argument("--acceptance", "--accept", type=float, default=TrainConfig.acceptance,
                       metavar="SHARE", help="share of in-domain pictures the unknown detector "
                                             "accepts; the threshold is set from validation")
    train.add_argument("--unknown-folder", metavar="DIR", default=None,
                       help="pictures of none of the classes, to tune the unknown detector "
                            "(a class folder named _unknown works too)")
    train.add_argument("--devices", type=int, default=1, metavar="N",
                       help="train in N processes, one per GPU (or sharing the CPU), "
                            "data-parallel through torchrun: the same batches, split N ways "
                            "(default: 1)")
    train.add_argument("--resume", action="store_true",
                       help="continue the interrupted run in --out from its last checkpoint")
    train.set_defaults(run=handlers._train, command="train")

    clean = commands.add_parser(
        "clean", help="find mislabelled, off-topic and duplicate pictures; fix them safely",
        description="Examples: imgclf clean data/cats (writes data/cats/issues.csv); "
                    "imgclf clean data/cats --review (a page to decide on each picture); "
                    "imgclf clean data/cats --auto; imgclf clean data/cats --apply "
                    "decisions.csv; imgclf clean data/cats --undo")
    _add_data_arguments(clean)
    what = clean.add_mutually_exclusive_group()
    what.add_argument("--auto", action="store_true",
                      help=f"apply the sure fixes: relabel (score >= "
                           f"{CleanConfig.auto_label_score}), remove off-topic pictures, copies "
                           f"and unreadable files (score >= {CleanConfig.auto_score}; files are "
                           "moved to _removed/, never deleted)")
    what.add_argument("--apply", metavar="CSV",
                      help="apply decisions (columns path, action keep/relabel/remove, label)")
    what.add_argument("--undo", action="store_true", help="move back every file cleaning moved")
    what.add_argument("--review", action="store_true",
                      help="then serve a page to keep, relabel or remove each flagged "
                           "picture (each decision saved at once to decisions.csv in the data "
                           "folder; its Apply button moves the files)")
    clean.add_argument("--out", metavar="CSV", default=None,
                       help="where to write the issues (default: issues.csv in the data folder)")
    clean.add_argument("--second-backbone", metavar="NAME", default=CleanConfig.second_backbone,
                       help="also weigh this backbone's embeddings for the label and off-topic "
                            "findings (e.g. efficientnet_lite2: finds more of them on average; "
                            "from an empty cache it takes about 2.2x as long)")
    clean.add_argument("--port", type=int, default=ServeConfig.review_port,
                       help="port of the --review page, on 127.0.0.1")
    clean.set_defaults(run=handlers._clean, command="clean")

    predict = commands.add_parser("predict", help="label pictures with a trained model file")
    predict.add_argument("model", help="a .imgclf model file (or a training output folder)")
    predict.add_argument("paths", nargs="+", help="image files or folders")
    predict.add_argument("--top-k", type=int, default=1, help="classes to show per picture")
    predict.add_argument("--batch-size", type=int, default=InferenceConfig.batch_size)
    output = predict.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON object per line")
    output.add_argument("--csv", metavar="FILE", help="write a CSV file instead")
    output.add_argument("--out", metavar="FILE",
                        help="with --engine ray: the .parquet or .csv table to write (another "
                             "path, or s3://..., gets a folder of Parquet parts)")
    predict.add_argument("--explain", metavar="DIR",
                         help="also write one PNG per picture to DIR: the evidence for its "
                              "answer as a heatmap and the nearest training pictures")
    predict.add_argument("--engine", default="local", choices=["local", "ray"],
                         help="local (this process) or ray: Ray Data, one model per actor, "
                              "on RAY_ADDRESS's cluster or a local Ray (pip install "
                              "'imgclf[ray]')")
    predict.add_argument("--address", default=None,
                         help="with --engine ray: the cluster, e.g. ray://head:10001 or auto "
                              "(default: RAY_ADDRESS, else Ray on this machine)")
    predict.add_argument("--actors", type=int, default=None,
                         help="with --engine ray: actors predicting at once (default: up to "
                              "the cluster's CPUs)")
    predict.add_argument("--gpus-per-actor", type=float, default=0,
                         help="with --engine ray: GPUs each actor holds (0: CPU actors)")
    _add_accept_argument(predict)
    _add_threshold_argument(predict)
    predict.set_defaults(run=predicting._predict, command="predict")

    evaluate = commands.add_parser(
        "evaluate", help="metrics, confusion matrix, top losses and an HTML report")
    evaluate.add_argument("model", help="a .imgclf model file (or a training output folder)")
    _add_data_arguments(evaluate, defaults_from_model=True)
    evaluate.add_argument("--split", default="valid", choices=["valid", "test"])
    evaluate.add_argument("--report", metavar="HTML", help="write the self-contained HTML report")
    evaluate.add_argument("--tta", action="store_true",
                          help="test-time augmentation: average each picture with its mirror")
    evaluate.add_argument("--json", action="store_true", help="print the summary as JSON")
    evaluate.add_argument("--unknown", metavar="DIR", default=None,
                          help="folder of pictures of none of the classes: how many are called "
                               "unknown")
    _add_accept_argument(evaluate)
    _add_threshold_argument(evaluate)
    evaluate.set_defaults(run=handlers._evaluate, command="evaluate")

    serve = commands.add_parser("serve", help="web page and JSON API for a model")
    serve.add_argument("model", help="a .imgclf model file (or a training output folder)")
    serve.add_argument("--host", default=ServeConfig.host)
    serve.add_argument("--port", type=int, default=ServeConfig.port)
    serve.add_argument("--examples", default=None,
                       help="folder of example pictures (default: examples/ beside the model)")
    _add_accept_argument(serve)
    _add_threshold_argument(serve)
    serve.set_defaults(run=handlers._serve, command="serve")

    export = commands.add_parser("export", help="export a model to ONNX or a Hugging Face Space")
    export.add_argument("model", help="a .imgclf model file (or a training output folder)")
    export.add_argument("--onnx", metavar="FILE", help="write an ONNX file (checked against torch)")
    export.add_argument("--check-images", nargs="*", default=[],
                        help="real pictures for the ONNX output check")
    export.add_argument("--int8", action="store_true",
                        help="with --onnx: write the int8 graph checked by imgclf evaluate "
                             "MODEL DATA --int8")
    export.add_argument("--space", metavar="DIR", help="write a Hugging Face Space folder")
    export.add_argument("--examples", nargs="*", default=[], help="example pictures for the Space")
    export.set_defaults(run=handlers._export, command="export")
    return parser


def _add_augment_arguments(parser: argparse.ArgumentParser) -> None:
    """Training augmentation (AugmentConfig): every field, its default from there."""
    group = parser.add_argument_group("augmentation (training pictures)")
    group.add_argument("--no-augment", action="store_true",
                       help="no augmentation at all: training pictures as validation sees them")
    group.add_argument("--no-flip", action="store_true",
                       help="never mirror (text, digits, objects with a left and right)")
    for name, text in (("min_scale", "random crops keep at least this share of the area"),
                       ("rotate", "largest rotation, degrees either way"),
                       ("zoom", "largest zoom factor (1: none)"),
                       ("warp", "perspective strength, 0 to 1"),
                       ("brightness", "largest relative change"), ("contrast", ""),
                       ("saturation", ""),
                       ("probability", "chance each change is applied to a picture")):
        default = getattr(AugmentConfig, name)
        group.add_argument("--" + name.replace("_", "-"), type=float, default=default,
                           help=f"{text} (default: {default})" if text
                           else f"default: {default}")
    group.add_argument("--augment-policy", default=AugmentConfig.policy,
                       choices=[p for p in AUGMENT_POLICIES if p],
                       help="an automatic policy on top (default: none)")


def duration(text: str) -> float:
    """Seconds from "90", "90s", "10m", "1.5h" (the --time-limit argument)."""
    units = {"s": 1, "m": 60, "h": 3600}
    text = text.strip().lower()
    scale = units.get(text[-1:], None)
    try:
        value = float(text[:-1] if scale else text) * (scale or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time: give seconds, or a number "
                                         f"followed by s, m or h (90s, 10m, 1h)") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time limit: give 0 or more")
    return value


def _add_accept_argument(parser: argparse.ArgumentParser) -> None:
    """--acceptance, --runtime and --int8: what every command that runs a model file takes."""
    parser.add_argument("--runtime", default=InferenceConfig.runtime, choices=RUNTIMES,
                        help="what runs the network: auto (onnxruntime on the CPU where "
                             "installed, about 2.5x faster; built once per model and cached), "
                             "onnx or torch (default: auto)")
    parser.add_argument("--int8", action="store_true",
                        help="run the model's int8 graph (2.1-2.3x float onnxruntime at batch "
                             "32 on a VNNI CPU); evaluate makes and checks it: calibrated on the "
                             "training pictures, refused if it loses over 0.5 point against "
                             "float on the validation pictures")
    parser.add_argument("--acceptance", "--accept", type=float,
                        default=InferenceConfig.acceptance, metavar="SHARE",
                        help="share of in-domain pictures the unknown detector accepts, e.g. "
                             "0.99 (default: the model's own, 0.98 unless trained otherwise)")


def _add_threshold_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threshold", action="append", default=None, metavar="[LABEL=]P",
                        help="a multi-label model: give a label from this probability on, "
                             "instead of the threshold it chose; P alone for every label, "
                             "LABEL=P for one (repeat it)")


def _add_data_arguments(parser: argparse.ArgumentParser, defaults_from_model: bool = False,
                        split_from_run: bool = False) -> None:
    """The data options; for a trained model (or a resumed run) the split settings default to
    its own (see _fill_split)."""
    parser.add_argument("data", help="folder of class folders (or train/ + valid/), or a CSV file")
    split_saved = defaults_from_model or split_from_run
    parser.add_argument("--valid-fraction", type=float,
                        default=None if split_saved else DataConfig.valid_fraction,
                        help=f"default {DataConfig.valid_fraction}"
                             + ("; the model's own" if defaults_from_model else
                                "; a resumed run's own" if split_from_run else ""))
    parser.add_argument("--seed", type=int, default=None if split_saved else DataConfig.seed,
                        help=f"default {DataConfig.seed}"
                             + ("; the model's own" if defaults_from_model else
                                "; a resumed run's own" if split_from_run else ""))
    if not defaults_from_model:  # a model knows its backbone
        parser.add_argument("--backbone", default=DEFAULT_BACKBONE,
                            help="decides the input size, mean and std"
                                 + ("; auto: the one whose probe has the lowest "
                                    "cross-validated loss (efficientnet_lite0, 1, 2)"
                                    if split_from_run else ""))
        parser.add_argument("--weights", default=None, metavar="FILE",
                            help="a .safetensors or .pth file of the backbone's weights, "
                                 "instead of its ImageNet ones")
    parser.add_argument("--image-size", type=int, default=None,
                        help="side of the square input (default: the backbone's; probe and "
                             "auto modes read at 1.3x it)")
    parser.add_argument("--resize", default=None, choices=RESIZE_METHODS,
                        help="how pictures become square (default: crop)")
    parser.add_argument("--batch-size", type=int, default=DataConfig.batch_size)
    parser.add_argument("--balance", action="store_true",
                        help="draw every class equally often in training")
    parser.add_argument("--label-pattern", default=None,
                        help="read labels from file names with this regular expression, its "
                             "first group the label, e.g. '^(.+)_\\d+\\.\\w+$'")
    parser.add_argument("--path-column", default="path",
                        help="CSV data: the column of picture paths (default: path)")
    parser.add_argument("--label-column", default="label",
                        help="CSV data: the column of labels (default: label)")
    parser.add_argument("--label-delim", default=DataConfig.label_delim, metavar="SEP",
                        help="CSV data with several labels per picture (multi-label): the "
                             "separator in the label column, e.g. ' ' or ';'")
    parser.add_argument("--split-column", default=None,
                        help="CSV data: a column saying train/valid/test, or a true/false "
                             "column such as fastai's is_valid (default: a seeded split)")
