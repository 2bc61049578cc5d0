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
    "Evaluation": "imgclf.evaluation.metrics",
    "Explanation": "imgclf.inference.explain",
    "ImageData": "imgclf.data.imagedata",
    "HeadConfig": "imgclf.config",
    "ImageError": "imgclf.errors",
    "ImgclfError": "imgclf.errors",
    "InputConfig": "imgclf.config",
    "Item": "imgclf.data.sources",
    "ModelInfo": "imgclf.modelfile",
    "Learner": "imgclf.training.learner",
    "ModelFileError": "imgclf.errors",
    "MultiLabelEvaluation": "imgclf.evaluation.multilabel",
    "Prediction": "imgclf.inference.prediction",
    "Predictor": "imgclf.inference.predictor",
    "TrainConfig": "imgclf.config",
    "classify_imagenet": "imgclf.inference.imagenet",
    "collect": "imgclf.collection",
    "create_backbone": "imgclf.backbones",
    "eval_transform": "imgclf.data.transforms",
    "evaluate": "imgclf.evaluation.metrics",
    "find_images": "imgclf.data.sources",
    "import_huggingface": "imgclf.collection",
    "import_kaggle": "imgclf.collection",
    "items_from_csv": "imgclf.data.sources",
    "items_from_dataframe": "imgclf.data.sources",
    "items_from_filenames": "imgclf.data.sources",
    "items_from_folder": "imgclf.data.sources",
    "list_backbones": "imgclf.backbones",
    "load": "imgclf.inference.predictor",
    "load_image": "imgclf.data.decoding",
    "predict_dataset": "imgclf.inference.ray_batch",
    "quantize": "imgclf.inference.int8",
    "split_items": "imgclf.data.sources",
    "train": "imgclf.training.modes",
    "train_transform": "imgclf.data.transforms",
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
    from imgclf.data.decoding import load_image
    from imgclf.data.imagedata import ImageData
    from imgclf.data.sources import (Item, find_images, items_from_csv, items_from_dataframe,
                                     items_from_filenames, items_from_folder, split_items)
    from imgclf.data.transforms import eval_transform, train_transform
    from imgclf.errors import (BackboneError, CollectError, DataError, ImageError, ImgclfError,
                               ModelFileError)
    from imgclf.evaluation.metrics import Evaluation, evaluate
    from imgclf.evaluation.multilabel import MultiLabelEvaluation
    from imgclf.inference.explain import Explanation
    from imgclf.inference.imagenet import classify_imagenet
    from imgclf.inference.prediction import Prediction
    from imgclf.inference.predictor import Predictor, load
    from imgclf.modelfile import ModelInfo
    from imgclf.training.learner import Learner
    from imgclf.training.modes import train
