"""imgclf's cache: where it keeps what it can rebuild, what each kind holds, and clearing it.

Every kind is rebuilt on demand, so any of them can be deleted (``imgclf cache --clear``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def cache_root() -> Path:
    """Where imgclf keeps resized copies and verdicts: $IMGCLF_CACHE or ~/.cache/imgclf."""
    return Path(os.environ.get("IMGCLF_CACHE") or Path.home() / ".cache" / "imgclf").absolute()


_HEX = "[0-9a-f]"
# What imgclf keeps under cache_root(), by kind: (folder or file, what it is, the shape of its
# files' paths within it). All of it is rebuilt on demand, so any kind can be deleted (imgclf
# cache --clear), and only files of these shapes are: other folders there (scripts/env.sh's
# venvs, downloaded datasets) and anything else a user put under $IMGCLF_CACHE stay.
CACHE_KINDS = {
    "copies": ("images", "resized training copies, read by every fine-tuning epoch",
               rf"{_HEX}{{2}}/{_HEX}{{24}}_\d+\.jpg"),
    "views": ("views", "square views: each picture decoded once a run",
              rf"{_HEX}{{16}}/{_HEX}{{2}}/{_HEX}{{32}}\.npy"),
    "embeddings": ("embeddings", "the probe's embeddings, by backbone and preprocessing",
                   rf"[^/]+/{_HEX}{{16}}/{_HEX}{{2}}/{_HEX}{{64}}_\d+\.npy"),
    "runtimes": ("runtimes", "onnxruntime graphs (and int8 checks), by weights and size",
                 rf"{_HEX}{{24}}(\.int8)?\.(onnx|json)"),
    "verdicts": ("verified.json", "verification verdicts, by path, size and time", ""),
}


def _cache_files(kind: str) -> list[tuple[Path, int]]:
    """(path, bytes) of each file of one kind of cache (left-over temporary files included);
    a file that vanishes while listed (another run replacing it) is left out."""
    name, _, shape = CACHE_KINDS[kind]
    root = cache_root() / name
    if not shape:  # one file (and its writers' left-over temporaries)
        candidates = [root, *root.parent.glob(f".{root.name}.*.tmp")]
    elif root.is_dir() and not root.is_symlink():
        pattern = re.compile(rf"(?:{shape})|(?:.*/)?\.[^/]+\.tmp")
        candidates = [path for path in root.rglob("*")
                      if pattern.fullmatch(path.relative_to(root).as_posix())]
    else:
        candidates = []
    files = []
    for path in candidates:
        try:
            if path.is_file() and not path.is_symlink():
                files.append((path, path.stat().st_size))
        except OSError:
            continue
    return files


def cache_usage() -> dict[str, tuple[int, int]]:
    """(files, bytes) of each kind of CACHE_KINDS."""
    usage = {}
    for kind in CACHE_KINDS:
        files = _cache_files(kind)
        usage[kind] = (len(files), sum(size for _, size in files))
    return usage


def clear_cache(kinds: list[str]) -> dict[str, tuple[int, int, int]]:
    """Delete these kinds of cache (names of CACHE_KINDS): their files alone, then the folders
    they leave empty. Per kind: (files deleted, bytes freed, files that could not be)."""
    unknown = sorted(set(kinds) - set(CACHE_KINDS))
    if unknown:
        raise ValueError(f"No cache kind {', '.join(unknown)}: the kinds are "
                         f"{', '.join(CACHE_KINDS)}.")
    cleared = {}
    for kind in dict.fromkeys(kinds):
        deleted = freed = failed = 0
        for path, size in _cache_files(kind):
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError:
                failed += 1
                continue
            deleted, freed = deleted + 1, freed + size
        root = cache_root() / CACHE_KINDS[kind][0]
        if root.is_dir() and not root.is_symlink():
            for folder in sorted((p for p in root.rglob("*") if p.is_dir()),
                                 key=lambda p: len(p.parts), reverse=True) + [root]:
                try:
                    folder.rmdir()  # only when empty: what else is there stays
                except OSError:
                    pass
        cleared[kind] = (deleted, freed, failed)
    return cleared
