"""The exceptions imgclf raises on purpose: each one says what went wrong and what to do."""

from __future__ import annotations

import warnings


class ImgclfError(Exception):
    """Base class of every error imgclf raises on purpose."""


class ImageError(ImgclfError, ValueError):
    """An image could not be read: it names the file and the reason.

    Attributes:
        source: the path (or ``"<bytes>"``) that failed.
        reason: a short, human-readable reason, e.g. ``"empty file (0 bytes)"``.
    """

    def __init__(self, source: str, reason: str, index: int | None = None):
        self.source = source
        self.reason = reason
        self.index = index  # its position in the dataset that read it, when one did
        super().__init__(f"{source}: {reason}")

    def __reduce__(self):
        # DataLoader workers send errors back to the main process by pickling them.
        return type(self), (self.source, self.reason, self.index)


class BackboneError(ImgclfError):
    """A backbone name is unknown or its pretrained weights cannot be loaded."""


class DataError(ImgclfError):
    """A dataset cannot be used as given (no images, one class, ...); the message says what to do."""


class ModelFileError(ImgclfError):
    """A model or checkpoint file is missing, damaged, modified, or not an imgclf file."""


class CollectError(ImgclfError):
    """Image collection cannot go on as asked (unknown provider, missing key, ...)."""


class ImgclfWarning(UserWarning):
    """Something worth knowing about the data or a run that does not stop it (a class with
    few pictures, an empty folder, a setting that does not apply). Printed as
    ``imgclf: message``, not with Python's file and source line."""


def _format_warning(message, category, filename, lineno, line=None):
    if issubclass(category, ImgclfWarning):
        return f"imgclf: {message}\n"
    return _python_format(message, category, filename, lineno, line)


_python_format = warnings.formatwarning
warnings.formatwarning = _format_warning  # only ImgclfWarning reads differently
