"""manifest.csv (every kept picture and where it came from) and skipped.csv (what was not kept)."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from imgclf._files import ESCAPE_BYTES

MANIFEST = "manifest.csv"
SKIPPED = "skipped.csv"


@dataclass(frozen=True)
class Kept:
    """One manifest row: enough to credit the author and to check the file is unchanged."""

    file: str  # relative to the dataset folder: <class>/<name>
    label: str
    query: str
    provider: str
    image_url: str
    page_url: str
    licence: str
    licence_url: str
    author: str
    title: str
    width: int
    height: int
    sha256: str


@dataclass(frozen=True)
class Skipped:
    url: str
    label: str
    query: str
    provider: str
    reason: str
    # transient failures (timeouts, 5xx, 429) are tried again on the next run
    transient: bool


def _columns(kind) -> list[str]:
    return ["class" if f.name == "label" else f.name for f in fields(kind)]


def read_rows(path: Path, kind):
    """Rows of a manifest or skipped file as dataclasses ([] when the file does not exist)."""
    if not path.exists():
        return []
    types = {f.name: f.type for f in fields(kind)}
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            values = {("label" if key == "class" else key): value for key, value in row.items()
                      if key is not None}
            for name, annotation in types.items():  # annotations are strings here
                value = values.get(name) or ""
                values[name] = (int(value or 0) if annotation == "int"
                                else value == "yes" if annotation == "bool" else value)
            rows.append(kind(**{name: values[name] for name in types}))
    return rows


class RowWriter:
    """Appends rows as they happen, flushed, so an interrupted run keeps its record."""

    def __init__(self, path: Path, kind):
        new = not path.exists() or path.stat().st_size == 0
        self.handle = open(path, "a", newline="", encoding="utf-8", errors=ESCAPE_BYTES)
        self.writer = csv.writer(self.handle)
        if new:
            self.writer.writerow(_columns(kind))
            self.handle.flush()

    def write(self, row) -> None:
        self.writer.writerow(["yes" if value is True else "no" if value is False else value
                              for value in asdict(row).values()])
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()
