"""Writing files safely: every file imgclf writes appears whole or not at all, in UTF-8 that
never fails on a file name, and an output folder is used by one run at a time."""

from __future__ import annotations

import codecs
import functools
import hashlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from imgclf.errors import ImgclfError

# Python reads a file name that is not valid UTF-8 into a str with "surrogate escapes"
# (\udcXX, one per undecodable byte); written out as UTF-8 they raise UnicodeEncodeError.
# This handler writes each such byte as the text \xXX instead, so outputs stay valid UTF-8.
ESCAPE_BYTES = "imgclf-escape-bytes"


def _escape_bytes(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    text = error.object[error.start:error.end]
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF
                   else f"\\u{ord(c):04x}" for c in text), error.end


codecs.register_error(ESCAPE_BYTES, _escape_bytes)


def printable(text: Any) -> str:
    """Text (a path, usually) as valid UTF-8: undecodable bytes shown as \\xXX.

    Example:
        >>> printable(os.fsdecode(b"caf\\xe9.jpg"))
        'caf\\\\xe9.jpg'
    """
    return str(text).encode("utf-8", ESCAPE_BYTES).decode("utf-8")


def safe_streams() -> None:
    """Let stdout and stderr print any file name instead of raising UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors=ESCAPE_BYTES)


@contextmanager
def atomic_path(path: str | os.PathLike, *, durable: bool = True) -> Iterator[Path]:
    """A temporary path beside `path` to write to; it replaces `path` only if the block ends
    without an error, so readers see the old file or the whole new one, never half of it.

    durable: flush the file and its folder to the disk too, so that a power cut cannot leave
    an empty file under the name either (False for caches, which are safe to lose).

    Example:
        >>> with atomic_path("model.imgclf") as temporary:
        ...     save_file(tensors, str(temporary))
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # one name per process and thread: two writers of one file never share a temporary
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        yield temporary
        if durable:
            _sync(temporary)
        os.replace(temporary, path)
        if durable:
            _sync(path.parent)
    finally:
        temporary.unlink(missing_ok=True)


def _sync(path: Path) -> None:
    """fsync a file or folder (folders cannot be opened on Windows: skipped there)."""
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", *, durable: bool = True,
                **options) -> Iterator[IO]:
    """open() for writing, atomically; text is UTF-8 and never fails on a file name."""
    if "b" not in mode:
        options = {"encoding": "utf-8", "errors": ESCAPE_BYTES, **options}
    with atomic_path(path, durable=durable) as temporary, \
            open(temporary, mode, **options) as handle:
        yield handle


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically in UTF-8."""
    with atomic_open(path) as handle:
        handle.write(text)
    return Path(path)


def save_array(path: str | os.PathLike, array: Any) -> None:
    """Write a numpy array as .npy for a cache: whole or not at all, never fsynced (a cache
    can lose it)."""
    import numpy as np

    with atomic_open(path, "wb", durable=False) as handle:
        np.save(handle, array)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in 1 MB blocks (a 15 MB graph: about 30 ms)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def known_sha256(path: str | os.PathLike) -> str:
    """file_sha256, hashed once per version of the file (path, file number, size, modification
    and change times) in a process: a model's graph is checked at every load, its hash
    computed once; a file replaced by another (a new file number) is hashed again."""
    found = os.stat(path)
    return _sha256_of(os.fspath(path), found.st_ino, found.st_size, found.st_mtime_ns,
                      found.st_ctime_ns)


@functools.lru_cache(maxsize=32)
def _sha256_of(path: str, *version: int) -> str:
    return file_sha256(path)


def write_json(path: str | os.PathLike, value: Any, **options) -> Path:
    """Write JSON atomically (ASCII-escaped, so any file name in it survives)."""
    return write_text(path, json.dumps(value, **options))


LOCK = ".imgclf.lock"


class FolderLock:
    """An exclusive lock on an output folder, held while a run writes to it.

    A second run into the same folder refuses and says which process holds it. The lock is
    the operating system's (flock), so a run that was killed leaves no lock behind: its lock
    file, still naming it, is recognised as stale and taken over (``previous`` says whose).

    Example:
        >>> with FolderLock("models/ants", "training"):
        ...     ...  # write the run's files
    """

    def __init__(self, folder: str | os.PathLike, purpose: str = "run"):
        self.folder, self.purpose = Path(folder), purpose
        self.path = self.folder / LOCK
        self._handle: IO | None = None
        self.previous: dict[str, Any] | None = None  # a stale lock's holder, if there was one

    def __enter__(self) -> FolderLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            _lock(handle)
        except OSError:
            holder = _read_holder(handle)
            handle.close()
            raise ImgclfError(
                f"{self.folder} is in use by another {holder.get('purpose', 'run')}: "
                f"{_describe(holder)}. Wait for it to finish, or give this run another "
                f"output folder.") from None
        self.previous = _read_holder(handle) or None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                                 "purpose": self.purpose,
                                 "command": printable(" ".join(sys.argv))}))
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc_info) -> None:
        if self._handle is not None:
            # emptied, not deleted: deleting would let two later runs lock two different files
            self._handle.seek(0)
            self._handle.truncate()
            self._handle.close()  # closing releases the lock
            self._handle = None


def _lock(handle: IO) -> None:
    """Lock a file exclusively without waiting; OSError if another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def _read_holder(handle: IO) -> dict[str, Any]:
    try:
        handle.seek(0)
        holder = json.loads(handle.read() or "{}")
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "a process that has not said which"
    return (f"process {holder.get('pid')} on {holder.get('host')}, started "
            f"{holder.get('started')} ({holder.get('command')})")
