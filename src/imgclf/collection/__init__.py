"""Build a labelled image dataset: web image search, or an import from Kaggle / Hugging Face.

Nothing here imports the training code; the result is plain class folders plus a manifest.
"""

from __future__ import annotations

from imgclf.collection.collector import ClassResult, CollectReport, collect, parse_classes
from imgclf.collection.http import Http
from imgclf.collection.imports import import_huggingface, import_kaggle
from imgclf.collection.providers import (PROVIDERS, CollectError, Found, Provider,
                                         ProviderUnavailable)

__all__ = ["PROVIDERS", "ClassResult", "CollectError", "CollectReport", "Found", "Http",
           "Provider", "ProviderUnavailable", "collect", "import_huggingface", "import_kaggle",
           "parse_classes"]
