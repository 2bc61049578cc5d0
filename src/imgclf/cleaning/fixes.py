"""Apply cleaning decisions without ever losing a file: moves, never deletions, all logged.

A decision is keep, relabel (to another class) or remove. For class folders, a removed picture
moves to ``DATA/_removed/`` (its place under DATA kept) and a relabelled one to its new class
folder beside the old; every move is written to ``DATA/cleaning-log.csv`` (and flushed to disk)
before it is made, so an interrupted run can be rerun or undone with nothing lost: each logged
move is found either done or not done on disk. ``undo`` moves everything back. CSV-labelled
data gets a corrected copy of its CSV instead of moved files.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imgclf._files import ESCAPE_BYTES, FolderLock, atomic_open
from imgclf.data.sources import REMOVED_FOLDER
from imgclf.errors import DataError

# The kinds of issue cleaning.find_issues reports, in the order a summary lists them, with what
# each means; and the columns of issues.csv. Here, not in cleaning.py, so that the review page
# (serve/, which must not import training code) reads the same words.
DESCRIPTIONS = {
    "label": "likely mislabelled",
    "off_topic": "looks like none of the classes",
    "duplicate": "a copy of another picture of its class",
    "conflict": "a copy of a picture given another class",
    "leakage": "a copy of a picture in another split",
    "unreadable": "cannot be read",
    "suspicious": "readable, but unlike a photo",
}
KINDS = tuple(DESCRIPTIONS)
COLUMNS = ("path", "kind", "label", "suggested", "score", "split", "other", "detail")
ACTIONS = ("keep", "relabel", "remove")
LOG = "cleaning-log.csv"
DECISIONS = "decisions.csv"
_LOG_COLUMNS = ("time", "action", "source", "target")


@dataclass(frozen=True)
class Decision:
    """What to do with one picture: keep it, relabel it to `label`, or remove it."""

    path: Path
    action: str
    label: str | None = None

    def __post_init__(self):
        if self.action not in ACTIONS:
            raise DataError(f"Unknown action {self.action!r} for {self.path}: use one of "
                            f"{', '.join(ACTIONS)}.")
        if self.action == "relabel" and not self.label:
            raise DataError(f"Relabelling {self.path} needs the new label.")


@dataclass
class Applied:
    """What apply_decisions did: moves made, moves found already made, and decisions for
    files that are gone."""

    moved: list[tuple[Path, Path]] = field(default_factory=list)
    already: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def write_decisions(path: str | os.PathLike, decisions: Iterable[Decision]) -> Path:
    """decisions.csv: path, action, label."""
    with atomic_open(path, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "action", "label"])
        for decision in decisions:
            writer.writerow([str(decision.path), decision.action, decision.label or ""])
    return Path(path)


def record_decision(path: str | os.PathLike, decision: Decision) -> None:
    """Append one decision to a decisions file as it is made (the last one per picture
    counts), flushed, so closing a review page loses nothing."""
    path = Path(path)
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="", encoding="utf-8", errors=ESCAPE_BYTES) as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(["path", "action", "label"])
        writer.writerow([str(decision.path), decision.action, decision.label or ""])
        handle.flush()
        os.fsync(handle.fileno())


def read_table(path: str | os.PathLike, needs: Sequence[str], what: str, *, hint: str = ""
               ) -> list[dict[str, str]]:
    """The rows of one of cleaning's CSV files (issues, decisions), blanks as "".

    Raises:
        DataError: no such file (`what` names it for people, "issues file"; `hint` says
            what to do), or it lacks a column of `needs`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"No {what} at {path}{hint}.")
    with open(path, newline="", encoding="utf-8-sig", errors=ESCAPE_BYTES) as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if not set(needs) <= set(columns):
            named = " and ".join([", ".join(needs[:-1]), needs[-1]] if len(needs) > 1 else needs)
            raise DataError(f"{path} is not an imgclf {what}: it needs the columns {named} "
                            f"(it has {', '.join(columns) or 'none'}).")
        return [{key: value or "" for key, value in row.items() if key}
                for row in reader if row.get("path")]


def read_decisions(path: str | os.PathLike) -> list[Decision]:
    """The decisions of a decisions.csv, the last one per picture.

    Raises:
        DataError: missing, or without path and action columns.
    """
    rows = read_table(path, ("path", "action"), "decisions file")
    latest = {row["path"]: Decision(Path(row["path"]), row["action"].strip().lower(),
                                    row.get("label", "").strip() or None) for row in rows}
    return list(latest.values())


def apply_decisions(root: str | os.PathLike, decisions: Sequence[Decision], *,
                    classes: Sequence[str] = ()) -> Applied:
    """Move the pictures of class folders under root as decided, logging every move first.

    A relabel to a class that is not a folder yet creates it (`classes`, if given, are the
    known ones: another label is refused). Running it again finds the moves already made.
    """
    root = Path(os.path.abspath(root))
    applied = Applied()
    with FolderLock(root, "imgclf clean"), \
            open(root / LOG, "a", newline="", encoding="utf-8", errors=ESCAPE_BYTES) as log:
        writer = csv.writer(log)
        if log.tell() == 0:
            writer.writerow(_LOG_COLUMNS)
        done = {(source, target) for _, _, source, target in _log_rows(root)}
        for decision in decisions:
            if decision.action == "keep":
                continue
            if classes and decision.action == "relabel" and decision.label not in classes:
                raise DataError(f"Cannot relabel {decision.path} to {decision.label!r}: the "
                                f"classes are {', '.join(classes)}.")
            source = locate(decision.path, root)
            earlier = [target for (from_, target) in done if from_ == str(source)]
            if not os.path.lexists(source):  # lexists: a broken link can be moved too
                if any(os.path.lexists(target) for target in earlier):
                    applied.already += 1
                else:
                    applied.skipped.append((source, "no such file"))
                continue
            target = _free(_target(root, source, decision))
            writer.writerow([time.strftime("%Y-%m-%d %H:%M:%S"), decision.action,
                             str(source), str(target)])
            log.flush()
            os.fsync(log.fileno())  # the log knows of a move before it is made
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
            applied.moved.append((source, target))
    return applied


def undo(root: str | os.PathLike) -> list[tuple[Path, Path]]:
    """Move back every logged move not undone yet, latest first; returns (from, back to)
    pairs. Moves never made are passed over; the undo is logged too."""
    root = Path(os.path.abspath(root))
    back = []
    with FolderLock(root, "imgclf clean"), \
            open(root / LOG, "a", newline="", encoding="utf-8", errors=ESCAPE_BYTES) as log:
        writer = csv.writer(log)
        for source, target in reversed(_standing_moves(_log_rows(root))):
            if not os.path.lexists(target) or os.path.lexists(source):
                continue  # never made (interrupted), or something new took its place
            writer.writerow([time.strftime("%Y-%m-%d %H:%M:%S"), "undo", str(target),
                             str(source)])
            log.flush()
            os.fsync(log.fileno())
            source.parent.mkdir(parents=True, exist_ok=True)
            os.replace(target, source)
            back.append((target, source))
    return back


def correct_csv(csv_file: str | os.PathLike, decisions: Sequence[Decision], *,
                path_column: str = "path", label_column: str = "label",
                root: str | os.PathLike | None = None) -> Path:
    """A corrected copy of a labels CSV (``NAME.cleaned.csv`` beside it): relabelled rows get
    their new label, removed rows are left out; the original is not touched."""
    csv_file = Path(csv_file)
    base = Path(root) if root is not None else csv_file.parent
    by_path = {str(locate(decision.path, base)): decision for decision in decisions
               if decision.action != "keep"}
    with open(csv_file, newline="", encoding="utf-8-sig", errors=ESCAPE_BYTES) as handle:
        reader = csv.DictReader(handle)
        columns, rows = list(reader.fieldnames or ()), list(reader)
    matched = [by_path.get(os.path.abspath(base / row[path_column])) for row in rows]
    if by_path and not any(matched):
        raise DataError(f"None of the {len(by_path)} decision(s) names a file of {csv_file} "
                        f"(read relative to {base}): nothing to correct.")
    target = csv_file.with_name(f"{csv_file.stem}.cleaned.csv")
    with atomic_open(target, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row, decision in zip(rows, matched):
            if decision is not None and decision.action == "remove":
                continue
            if decision is not None and decision.action == "relabel":
                row = {**row, label_column: decision.label}
            writer.writerow(row)
    return target


def locate(path: str | os.PathLike, root: str | os.PathLike) -> Path:
    """A file named in issues.csv or decisions.csv, made absolute: a relative path is taken
    as given where something is there (issues.csv names files as `imgclf clean` was given
    them), else from the data folder. Absolute, since undo reads it back from the log."""
    path = Path(path).expanduser()
    if not path.is_absolute() and not os.path.lexists(path):
        path = Path(root) / path
    return Path(os.path.abspath(path))


def _target(root: Path, source: Path, decision: Decision) -> Path:
    if not source.is_relative_to(root):
        raise DataError(f"{source} is not inside {root}: nothing outside the data folder "
                        "is moved.")
    if decision.action == "remove":
        return root / REMOVED_FOLDER / source.relative_to(root)
    if source.parent == root or not source.parent.parent.is_relative_to(root):
        raise DataError(f"Cannot relabel {source}: it is not in a class folder under {root} "
                        "(labels from file names: rename the file instead).")
    return source.parent.parent / decision.label / source.name


def _free(target: Path) -> Path:
    """target, or target with -1, -2, ... before its suffix if that name is taken."""
    candidate, number = target, 0
    while candidate.exists():
        number += 1
        candidate = target.with_name(f"{target.stem}-{number}{target.suffix}")
    return candidate


def _standing_moves(rows: list[tuple[str, str, str, str]]) -> list[tuple[Path, Path]]:
    """The logged moves, in order, less those an "undo" row has moved back since."""
    moves: list[tuple[Path, Path]] = []
    for _, action, source, target in rows:
        if action != "undo":
            moves.append((Path(source), Path(target)))
            continue
        # an undo row moved `source` (the move's target) back to `target` (its source)
        for position in range(len(moves) - 1, -1, -1):
            if moves[position] == (Path(target), Path(source)):
                del moves[position]
                break
    return moves


def _log_rows(root: Path) -> list[tuple[str, str, str, str]]:
    path = root / LOG
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8", errors=ESCAPE_BYTES) as handle:
        return [tuple(row[:4]) for row in list(csv.reader(handle))[1:] if len(row) >= 4]
