"""imgclf: from a few dozen labelled photos to an accurate, deployed image classifier.

The public API is exactly ``__all__``. Names are imported on first use, so
``import imgclf`` stays fast and does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from imgclf._version import __version__

# public name -> module that defines it
_EXPORTS = {
    "AugmentConfig": "imgclf.config",
    "Backbone": "imgclf.backbones",
    "BackboneError": "imgclf.errors",
    "CollectConfig": "imgclf.config",
    "CollectError": "imgclf.errors",
    "DataConfig": "imgclf.config",
    "DataError": "imgclf.errors",
    "Evaluation": "imgclf.evaluation",
    "ImageData": "imgclf.data",
    "HeadConfig": "imgclf.config",
    "ImageError": "imgclf.errors",
    "ImgclfError": "imgclf.errors",
    "InputConfig": "imgclf.config",
    "Item": "imgclf.sources",
    "ModelInfo": "imgclf.modelfile",
    "Learner": "imgclf.training",
    "ModelFileError": "imgclf.errors",
    "Prediction": "imgclf.predict",
    "Predictor": "imgclf.predict",
    "TrainConfig": "imgclf.config",
    "classify_imagenet": "imgclf.imagenet",
    "collect": "imgclf.collection",
    "create_backbone": "imgclf.backbones",
    "eval_transform": "imgclf.transforms",
    "evaluate": "imgclf.evaluation",
    "find_images": "imgclf.sources",
    "import_huggingface": "imgclf.collection",
    "import_kaggle": "imgclf.collection",
    "items_from_csv": "imgclf.sources",
    "items_from_dataframe": "imgclf.sources",
    "items_from_filenames": "imgclf.sources",
    "items_from_folder": "imgclf.sources",
    "list_backbones": "imgclf.backbones",
    "load": "imgclf.predict",
    "load_image": "imgclf.images",
    "predict_dataset": "imgclf.cluster",
    "quantize": "imgclf.int8",
    "split_items": "imgclf.sources",
    "train": "imgclf.training",
    "train_transform": "imgclf.transforms",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'imgclf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from imgclf.backbones import Backbone, create_backbone, list_backbones
    from imgclf.collection import collect, import_huggingface, import_kaggle
    from imgclf.config import (AugmentConfig, CollectConfig, DataConfig, HeadConfig, InputConfig,
                               TrainConfig)
    from imgclf.data import ImageData
    from imgclf.errors import (BackboneError, CollectError, DataError, ImageError, ImgclfError,
                               ModelFileError)
    from imgclf.evaluation import Evaluation, evaluate
    from imgclf.imagenet import classify_imagenet
    from imgclf.images import load_image
    from imgclf.modelfile import ModelInfo
    from imgclf.predict import Prediction, Predictor, load
    from imgclf.sources import (Item, find_images, items_from_csv, items_from_dataframe,
                                items_from_filenames, items_from_folder, split_items)
    from imgclf.training import Learner, train
    from imgclf.transforms import eval_transform, train_transform
