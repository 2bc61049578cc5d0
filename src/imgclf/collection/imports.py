"""Import a ready-made dataset as class folders: Kaggle (``kaggle``) or Hugging Face (``datasets``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from imgclf._progress import progress
from imgclf.collection.collector import check_label
from imgclf.collection.providers.base import CollectError


def kaggle_credentials() -> str | None:
    """Where Kaggle credentials were found (a description), or None."""
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME and KAGGLE_KEY"
    folders = [Path(os.environ["KAGGLE_CONFIG_DIR"])] if os.environ.get("KAGGLE_CONFIG_DIR") else []
    folders += [Path.home() / ".kaggle",
                Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"]
    for folder in folders:
        for name in ("kaggle.json", "access_token"):
            if (folder / name).is_file():
                return str(folder / name)
    return None


def import_kaggle(dataset: str, folder: str | os.PathLike, *, api: Any = None) -> Path:
    """Download and unzip a Kaggle dataset ("OWNER/DATASET") into folder.

    Credentials come from ~/.kaggle/kaggle.json or the environment (KAGGLE_USERNAME and
    KAGGLE_KEY, or KAGGLE_API_TOKEN). Returns the folder; point ImageData.from_folder at the
    subfolder that holds the class folders.

    Example:
        >>> import_kaggle("alxmamaev/flowers-recognition", "data/flowers")
    """
    if dataset.count("/") != 1 or not all(dataset.split("/")):
        raise CollectError(f"{dataset!r}: give a Kaggle dataset as OWNER/DATASET, e.g. "
                           "alxmamaev/flowers-recognition (the end of its kaggle.com address).")
    if api is None:
        if kaggle_credentials() is None:
            raise CollectError(
                "No Kaggle credentials found. Create a token at https://www.kaggle.com/settings "
                "(API > Create New Token) and save it as ~/.kaggle/kaggle.json, or set "
                "KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN).")
        try:
            from kaggle.api.kaggle_api_extended import KaggleApi
        except ImportError:
            raise CollectError("Importing from Kaggle needs the kaggle package: "
                               "pip install 'imgclf[kaggle]'") from None
        api = KaggleApi()
        try:
            api.authenticate()
        except SystemExit:  # the kaggle package exits when it cannot authenticate
            raise CollectError("Kaggle rejected the credentials; create a new token at "
                               "https://www.kaggle.com/settings.") from None
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    try:
        api.dataset_download_files(dataset, path=str(target), unzip=True, quiet=False)
    except Exception as error:  # noqa: BLE001 - the kaggle client raises many kinds
        raise CollectError(f"Kaggle download of {dataset} failed: {error}") from None
    return target


def import_huggingface(name: str, folder: str | os.PathLike, *, split: str | None = None,
                       image_column: str | None = None, label_column: str | None = None,
                       show_progress: bool = True) -> Path:
    """Write a Hugging Face image dataset as class folders: folder/<split>/<label>/<n>.png.

    name is a Hub dataset ("beans") or a folder written by ``Dataset.save_to_disk``. The
    image and label columns are found from the features (Image, ClassLabel) unless given;
    splits named train/validation/test become train/valid/test folders, which
    ImageData.from_folder reads as the split.

    Example:
        >>> import_huggingface("beans", "data/beans")
    """
    try:
        import datasets
    except ImportError:
        raise CollectError("Importing from Hugging Face needs the datasets package: "
                           "pip install 'imgclf[huggingface]'") from None
    try:
        if Path(name).is_dir():
            loaded = datasets.load_from_disk(name)
        else:
            loaded = datasets.load_dataset(name, split=split)
    except FileNotFoundError as error:
        raise CollectError(f"Hugging Face dataset {name!r} not found ({error}).") from None
    except Exception as error:  # noqa: BLE001 - network, hub and format errors alike
        raise CollectError(f"Could not load Hugging Face dataset {name!r}: {error}") from None
    if isinstance(loaded, datasets.DatasetDict):
        parts = {key: value for key, value in loaded.items() if split is None or key == split}
        if not parts:
            raise CollectError(f"{name} has no split {split!r}; it has {', '.join(loaded)}.")
    else:
        parts = {split or "train": loaded}
    root = Path(folder)
    folders = {"validation": "valid", "val": "valid", "valid": "valid", "test": "test"}
    for part, table in parts.items():
        images, labels = _columns(table, image_column, label_column)
        feature = table.features[labels]
        names = feature.names if isinstance(feature, datasets.ClassLabel) else None
        target = root / folders.get(part, "train") if len(parts) > 1 else root
        table = table.cast_column(images, datasets.Image(decode=True))
        for number, row in enumerate(progress(table, total=len(table), enabled=show_progress,
                                              description=f"Writing {part}")):
            value = row[labels]
            label = names[value] if names is not None and isinstance(value, int) else str(value)
            destination = target / check_label(label) / f"{number:06d}.png"
            destination.parent.mkdir(parents=True, exist_ok=True)
            row[images].convert("RGB").save(destination)
    return root


def _columns(table, image_column: str | None, label_column: str | None) -> tuple[str, str]:
    import datasets

    features = table.features
    if image_column is None:
        image_column = next((key for key, value in features.items()
                             if isinstance(value, datasets.Image)), None)
    if label_column is None:
        label_column = next((key for key, value in features.items()
                             if isinstance(value, datasets.ClassLabel)), None)
        label_column = label_column or next(
            (key for key in ("label", "labels", "class") if key in features), None)
    if image_column not in features or label_column not in features:
        raise CollectError(f"Could not tell the image and label columns apart among "
                           f"{', '.join(features)}: give image_column and label_column "
                           "(--image-column, --label-column).")
    return image_column, label_column
