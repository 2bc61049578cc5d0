"""Read every file once: skip the unreadable, flag the suspicious, keep a small copy for training.

Verdicts are cached by (path, size, modification time), so a second run over the same folder
reads nothing; resized copies are cached by content hash and size, so renaming a file or
adding a class costs only the new pictures.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from imgclf._files import atomic_open, save_array, write_json
from imgclf._progress import progress
from imgclf.cache import cache_folder
from imgclf.config import InputConfig
from imgclf.data.decoding import file_problem, load_image
from imgclf.errors import ImageError

# Pictures with this many colours or fewer are drawings, icons or placeholders, not photos
# (photos have thousands; some old GIF-converted photos have exactly 256).
FEW_COLOURS = 64
# Pictures smaller than this (either side, pixels) carry too little to learn from.
TINY_SIDE = 32
# Verdicts depend on these rules: a change of rules invalidates the index (3: one verdict a
# file, whatever the size of its copy).
_INDEX_VERSION = f"3-{FEW_COLOURS}-{TINY_SIDE}"


def view_folder(input: InputConfig) -> Path:
    """Where the square views (pictures.StoredViews) of one input size and resize method are
    kept: one uint8 .npy per picture, named by its content hash."""
    import PIL

    # the library that decodes and resizes is in the key: another version may round a pixel
    # differently, and a view must be what Predictor computes from the original today
    # (version 2: large JPEGs decoded at reduced scale, Square.decode_size; Pillow alone)
    key = json.dumps({"version": 2, "size": input.image_size, "resize": input.resize,
                      "crop": input.crop_fraction, "interpolation": input.interpolation,
                      "pillow": PIL.__version__}, sort_keys=True)
    return cache_folder("views") / hashlib.sha256(key.encode()).hexdigest()[:16]


def view_path(folder: Path, digest: str) -> Path:
    return folder / digest[:2] / f"{digest[:32]}.npy"


@dataclass(frozen=True)
class Verdict:
    """What reading one file found.

    Attributes:
        sha256: content hash (empty when the file could not be read).
        error: why the file is skipped, or None when it is usable.
        suspicious: why a readable picture looks wrong for a photo dataset, or None.
        width, height: the upright picture's size.
        copy: path of the resized copy used for training (None when not cached).
    """

    sha256: str = ""
    error: str | None = None
    suspicious: str | None = None
    width: int = 0
    height: int = 0
    copy: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def verify_files(paths: list[Path], *, copy_side: int | None, cache_dir: Path | None = None,
                 show_progress: bool = True, workers: int | None = None,
                 copy: list[bool] | None = None,
                 view: tuple[Path, Callable] | None = None) -> list[Verdict]:
    """Verdicts for files, in order; each file is decoded at most once per (size, mtime).

    Args:
        copy_side: shorter side of the cached resized copy, or None to keep no copies.
        cache_dir: where the index and copies go (default: cache_root()).
        copy: which files get a copy (default: all); the others are only checked.
        view: (view_folder, square): each file decoded here also leaves its square view
            there, so the run's first reader of that view need not decode it again.
    """
    cache_dir = cache_dir or cache_folder()
    index = _Index(cache_dir / "verified.json")
    copies = cache_dir / "images"
    keys = [_file_key(path) for path in paths]

    def check(position: int) -> Verdict:
        key = keys[position]
        side = copy_side if copy is None or copy[position] else None
        known = index.get(key)
        if known is not None and (side is None or not known.ok):
            return known
        if known is not None:  # a copy of this size, if one was made: else decode to make it
            target = _copy_path(copies, known.sha256, side)
            if target.exists():
                return replace(known, copy=str(target))
        verdict = _verify_one(paths[position], side, copies, view)
        index.put(key, verdict)
        return verdict

    threads = workers or min(8, os.cpu_count() or 1)  # Pillow decodes outside the GIL
    with ThreadPoolExecutor(max_workers=threads) as pool:
        verdicts = list(progress(pool.map(check, range(len(paths))), total=len(paths),
                                 description="Checking images", enabled=show_progress))
    index.save()
    return verdicts


def _verify_one(path: Path, copy_side: int | None, copies: Path,
                view: tuple[Path, Callable] | None = None) -> Verdict:
    problem = file_problem(path)  # before reading: a device or a 3 GB file is never read
    if problem:
        return Verdict(error=problem)
    try:
        data = path.read_bytes()
    except OSError as error:
        return Verdict(error=f"cannot be read ({error.strerror or error})")
    if not data:
        return Verdict(error="empty file (0 bytes)")
    digest = hashlib.sha256(data).hexdigest()
    try:
        picture = load_image(data)
    except ImageError as error:
        return Verdict(sha256=digest, error=error.reason)
    width, height = picture.size
    copy = None
    if copy_side is not None:
        target = _copy_path(copies, digest, copy_side)
        if not target.exists():
            _save_copy(picture, copy_side, target)
        copy = str(target)
    if view is not None:
        stored = view_path(view[0], digest)
        if not stored.exists():
            save_array(stored, np.asarray(view[1](_as_read(data, picture, view[1])),
                                          dtype=np.uint8))
    return Verdict(sha256=digest, suspicious=_suspicious(picture), width=width, height=height,
                   copy=copy)


def _as_read(data: bytes, picture, square: Callable):
    """The picture as every later reader decodes it for this square: a JPEG at least twice
    the size it needs is decoded again at reduced scale (Square.decode_size), as Predictor
    will decode it; any other picture is the one at hand."""
    least = getattr(square, "decode_size", None)
    if least is None or not data.startswith(b"\xff\xd8\xff"):
        return picture
    try:
        with Image.open(io.BytesIO(data)) as opened:  # the header's size, as load_image sees it
            width, height = opened.size
        need = least(width, height)
        if width < 2 * need[0] or height < 2 * need[1]:
            return picture  # too small to decode at half scale or less: the same pixels
        return load_image(data, least=least)
    except (ImageError, OSError, ValueError):
        return picture


def _copy_path(copies: Path, digest: str, side: int) -> Path:
    return copies / digest[:2] / f"{digest[:24]}_{side}.jpg"


def _suspicious(picture) -> str | None:
    width, height = picture.size
    if min(width, height) < TINY_SIDE:
        return f"tiny picture ({width}x{height} pixels)"
    colours = picture.getcolors(maxcolors=FEW_COLOURS)
    if colours is not None:
        return (f"only {len(colours)} colours: a drawing, icon or placeholder rather than a "
                "photo?")
    return None


def _save_copy(picture, shorter_side: int, target: Path) -> None:
    scale = shorter_side / min(picture.size)
    if scale < 1:
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
    with atomic_open(target, "wb", durable=False) as handle:  # a cache: never half-written
        picture.save(handle, format="JPEG", quality=95)


def _file_key(path: Path) -> str:
    try:
        stat = path.stat()
    except OSError:  # resolve() would raise on a link loop
        return f"{os.path.abspath(path)}|missing"
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


class _Index:
    """verified.json: file key -> verdict, written atomically; safe to lose (it is a cache)."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.changed = False
        try:
            loaded = json.loads(path.read_text())
            self.entries = loaded["entries"] if loaded.get("version") == _INDEX_VERSION else {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self.entries = {}

    def get(self, key: str) -> Verdict | None:
        """The file's verdict (its copy, of whatever size, is the caller's to find)."""
        entry = self.entries.get(key)
        return None if entry is None else Verdict(**entry)

    def put(self, key: str, verdict: Verdict) -> None:
        with self.lock:
            self.entries[key] = asdict(replace(verdict, copy=None))
            self.changed = True

    def save(self) -> None:
        if not self.changed:
            return
        write_json(self.path, {"version": _INDEX_VERSION, "entries": self.entries})
