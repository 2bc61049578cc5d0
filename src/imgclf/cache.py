"""imgclf's cache: where it keeps what it can rebuild, what each kind holds, and clearing it.

Every kind is rebuilt on demand, so any of them can be deleted (``imgclf cache --clear``). A
cache folder is imgclf's when it carries the marker file ``.imgclf-cache``: imgclf writes it
into ~/.cache/imgclf (the default, imgclf's by its name), and into a folder IMGCLF_CACHE names
if that holds nothing but what imgclf keeps there. ``--clear`` deletes nothing in a folder
without the marker, and in one with it only files shaped like imgclf's: ``IMGCLF_CACHE``
pointed at a folder of the user's own pictures loses none of them.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from imgclf.errors import ImgclfError

MARKER = ".imgclf-cache"
_HEX = "[0-9a-f]"
# What imgclf keeps under cache_root(), by kind: (folder or file, what it is, the shape of its
# files' paths within it, the shape of its folders). All of it is rebuilt on demand.
CACHE_KINDS = {
    "copies": ("images", "resized training copies, read by every fine-tuning epoch",
               rf"{_HEX}{{2}}/{_HEX}{{24}}_\d+\.jpg", rf"{_HEX}{{2}}"),
    "views": ("views", "square views: each picture decoded once a run",
              rf"{_HEX}{{16}}/{_HEX}{{2}}/{_HEX}{{32}}\.npy", rf"{_HEX}{{16}}(/{_HEX}{{2}})?"),
    "embeddings": ("embeddings", "the probe's embeddings, by backbone and preprocessing",
                   rf"[^/]+/{_HEX}{{16}}/{_HEX}{{2}}/{_HEX}{{64}}_\d+\.npy",
                   rf"[^/]+(/{_HEX}{{16}}(/{_HEX}{{2}})?)?"),
    "runtimes": ("runtimes", "onnxruntime graphs (and int8 checks), by weights and size, and "
                 "the graph each model file runs",
                 rf"{_HEX}{{24}}(\.int8)?\.(onnx|json|sha256)|models/{_HEX}{{32}}\.json",
                 "models"),
    "verdicts": ("verified.json", "verification verdicts, by path, size and time", "", ""),
}
# Other names imgclf may keep beside its kinds (scripts/env.sh's virtualenvs).
_OTHERS = {"venvs"}
# The temporary files of imgclf's atomic writes (_files.atomic_path): .NAME.PID.THREAD.tmp
_TEMPORARY = r"\.[^/]+\.\d+\.\d+\.tmp"


def cache_root() -> Path:
    """Where imgclf keeps resized copies, views, embeddings, graphs and verdicts:
    $IMGCLF_CACHE (a leading ~ is the home folder) or ~/.cache/imgclf.

    Raises:
        ImgclfError: $IMGCLF_CACHE names something that is not a folder.
    """
    setting = os.environ.get("IMGCLF_CACHE")
    root = Path(os.path.expanduser(setting)) if setting else Path.home() / ".cache" / "imgclf"
    root = root.absolute()
    if root.exists() and not root.is_dir():
        raise ImgclfError(f"IMGCLF_CACHE={setting} is a file, not a folder: point it at a "
                          "folder for imgclf's cache (or unset it for ~/.cache/imgclf).")
    return root


def cache_folder(name: str = "") -> Path:
    """cache_root() / name, ready to write into: the cache folder exists, is writable and
    carries imgclf's marker where it is imgclf's own (see the module's docstring).

    Raises:
        ImgclfError: the folder cannot be made, or imgclf may not write in it.
    """
    root = cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ImgclfError(f"Cannot make imgclf's cache folder {root}: {error.strerror}. Set "
                          "IMGCLF_CACHE to a folder you may write in.") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise ImgclfError(f"imgclf's cache folder {root} is read-only: set IMGCLF_CACHE to a "
                          "folder you may write in.")
    marker = root / MARKER
    # ~/.cache/imgclf is imgclf's by its name; a folder IMGCLF_CACHE names is, if it holds
    # nothing else
    if not marker.exists() and (not os.environ.get("IMGCLF_CACHE") or _only_imgclfs(root)):
        try:
            marker.write_text(json.dumps({"imgclf": "cache"}) + "\n", encoding="utf-8")
        except OSError:
            pass  # an unmarked cache still works; --clear will only leave it alone
    return root / name


def is_marked(root: Path | None = None) -> bool:
    """Whether the cache folder carries imgclf's marker."""
    return ((root or cache_root()) / MARKER).is_file()


def _only_imgclfs(root: Path) -> bool:
    """True when everything in root is a name imgclf keeps there (or one of its temporaries)."""
    names = {name for name, *_ in CACHE_KINDS.values()} | _OTHERS | {MARKER}
    for entry in os.scandir(root):
        if entry.name not in names and not re.fullmatch(_TEMPORARY, entry.name):
            return False
    return True


def _cache_files(kind: str) -> list[tuple[Path, int]]:
    """(path, bytes) of each file of one kind of cache (left-over temporary files included);
    a file that vanishes while listed (another run replacing it) is left out."""
    name, _, shape, _ = CACHE_KINDS[kind]
    root = cache_root() / name
    if not shape:  # one file (and its writers' left-over temporaries)
        temporaries = re.compile(rf"\.{re.escape(root.name)}\.\d+\.\d+\.tmp")
        candidates = [root, *(path for path in root.parent.glob(f".{root.name}.*.tmp")
                              if temporaries.fullmatch(path.name))]
        candidates = [path for path in candidates if path != root or _is_verdicts(path)]
    elif root.is_dir() and not root.is_symlink():
        pattern = re.compile(rf"(?:{shape})|(?:(?:.*/)?{_TEMPORARY})")
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


def _is_verdicts(path: Path) -> bool:
    """verified.json as imgclf writes it: {"version": ..., "entries": {...}}."""
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(loaded, dict) and set(loaded) == {"version", "entries"}


def cache_usage() -> dict[str, tuple[int, int]]:
    """(files, bytes) of each kind of CACHE_KINDS."""
    usage = {}
    for kind in CACHE_KINDS:
        files = _cache_files(kind)
        usage[kind] = (len(files), sum(size for _, size in files))
    return usage


def clear_cache(kinds: list[str]) -> dict[str, tuple[int, int, int]]:
    """Delete these kinds of cache (names of CACHE_KINDS): their files alone, then the folders
    of their shape they leave empty. Per kind: (files deleted, bytes freed, files that could
    not be).

    Raises:
        ValueError: an unknown kind.
        ImgclfError: the cache folder does not carry imgclf's marker (nothing is deleted).
    """
    unknown = sorted(set(kinds) - set(CACHE_KINDS))
    if unknown:
        raise ValueError(f"No cache kind {', '.join(unknown)}: the kinds are "
                         f"{', '.join(CACHE_KINDS)}.")
    root = cache_root()
    if root.is_dir() and not is_marked(root):
        raise ImgclfError(f"{root} is not marked as imgclf's cache (no {MARKER} file: it holds "
                          "files imgclf did not put there), so nothing was deleted. Point "
                          "IMGCLF_CACHE at a folder of its own, or delete what you need by hand.")
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
        name, _, _, folders = CACHE_KINDS[kind]
        _remove_empty_folders(root / name, folders)
        cleared[kind] = (deleted, freed, failed)
    return cleared


def _remove_empty_folders(top: Path, shape: str) -> None:
    """Remove the empty folders of imgclf's shape under top, deepest first, then top itself
    when empty: a folder of another name (a user's empty album, say) stays."""
    if not top.is_dir() or top.is_symlink():
        return
    pattern = re.compile(shape) if shape else None
    folders = [path for path in top.rglob("*") if pattern and path.is_dir()
               and not path.is_symlink() and pattern.fullmatch(path.relative_to(top).as_posix())]
    for folder in sorted(folders, key=lambda path: len(path.parts), reverse=True) + [top]:
        try:
            folder.rmdir()  # only when empty: what else is there stays
        except OSError:
            pass
