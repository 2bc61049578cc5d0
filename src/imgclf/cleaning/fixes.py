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
import hashlib
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imgclf._files import ESCAPE_BYTES, LOCK, FolderLock, atomic_open, file_sha256
from imgclf.data.sources import (IMAGE_SUFFIXES, REMOVED_FOLDER, SPLIT_FOLDERS, UNKNOWN_FOLDER,
                                 find_images)
from imgclf.errors import DataError

# The kinds of issue finding.find_issues reports, in the order a summary lists them, with what
# each means; and the columns of issues.csv. Here, not in finding.py, so that the review page
# reads the same words without importing the training code finding needs.
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
ISSUES = "issues.csv"
# sha256: the moved file's content, so that undo moves back only the file imgclf moved
_LOG_COLUMNS = ("time", "action", "source", "target", "sha256")
# cleaning's own files, and the lock: never a picture to move
_OWN_FILES = {LOG, DECISIONS, ISSUES, LOCK}
# A new label names a class folder and a CSV cell: no path, no control characters, and no
# leading = + - @ (a spreadsheet would run the cell as a formula)
_LABEL = re.compile(r"[^\x00-\x1f\x7f/\\=+\-@.][^\x00-\x1f\x7f/\\]*")


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
        if self.action == "relabel":
            check_label(self.label)


def check_label(label: str) -> str:
    """A new label, if it can name a class folder and a CSV cell safely.

    Raises:
        DataError: a path (/, \\, ..), a control character, a leading = + - @ (a spreadsheet
            formula) or . (a hidden folder), or imgclf's own folders' names.
    """
    if not _LABEL.fullmatch(label) or label in (REMOVED_FOLDER, UNKNOWN_FOLDER):
        raise DataError(f"{label!r} cannot be a class: a label is a plain name, with no / or "
                        "\\, no control character, not starting with . = + - or @, and not "
                        f"{REMOVED_FOLDER} or {UNKNOWN_FOLDER}.")
    return label


@dataclass
class Applied:
    """What apply_decisions did: moves made, moves found already made, and decisions for
    files that are gone."""

    moved: list[tuple[Path, Path]] = field(default_factory=list)
    already: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)


class Undone(list):
    """What undo did: the (from, back to) pairs it moved, and in ``left`` the logged moves it
    did not undo, with why (the old place is taken, the file changed, the row leads outside
    the data folder)."""

    def __init__(self, moved=(), left=()):
        super().__init__(moved)
        self.left: list[tuple[Path, str]] = list(left)


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

    Every decision is checked before anything moves: each names a picture inside root (not a
    folder, not one of cleaning's own files, not through a link to a folder elsewhere); a
    picture named several ways (relative, absolute, ./) is one, and its last decision counts.
    A relabel to a class that is not a folder yet creates it (`classes`, if given, are the
    known ones: another label is refused). Running it again finds the moves already made.

    Raises:
        DataError: a decision that cannot be carried out; nothing is moved then.
    """
    root = Path(os.path.abspath(root))
    if not root.is_dir():
        raise DataError(f"No data folder at {root}.")
    applied = Applied()
    with FolderLock(root, "imgclf clean"):
        done = {(source, target) for _, _, source, target, _ in _log_rows(root)}
        moves, problems = [], []
        for decision in _latest(root, decisions):
            if decision.action == "keep":
                continue
            source = locate(decision.path, root)
            if classes and decision.action == "relabel" and decision.label not in classes:
                problems.append((source, f"cannot be relabelled {decision.label!r}: the classes "
                                         f"are {', '.join(classes)}"))
                continue
            earlier = [target for (from_, target) in done if from_ == str(source)]
            if not os.path.lexists(source):  # lexists: a broken link can be moved too
                if any(os.path.lexists(target) for target in earlier):
                    applied.already += 1
                else:
                    applied.skipped.append((source, "no such file"))
                continue
            problem = _unmovable(root, source)
            if problem is None:
                try:
                    target = _target(root, source, decision)
                except DataError as error:
                    problem = str(error)
            if problem is None:
                problem = _unmovable(root, target, made=False)
            if problem is not None:
                problems.append((source, problem))
            else:
                moves.append((decision, source, target))
        if problems:
            listed = "".join(f"\n  {source}: {why}" for source, why in problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            raise DataError(f"{len(problems)} decision(s) cannot be carried out, so nothing was "
                            f"moved:{listed}{more}")
        with open(root / LOG, "a", newline="", encoding="utf-8", errors=ESCAPE_BYTES) as log:
            writer = csv.writer(log)
            if log.tell() == 0:
                writer.writerow(_LOG_COLUMNS)
            for decision, source, target in moves:
                target = _free(target)
                writer.writerow([time.strftime("%Y-%m-%d %H:%M:%S"), decision.action,
                                 str(source), str(target), _sha256(source)])
                log.flush()
                os.fsync(log.fileno())  # the log knows of a move before it is made
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(source, target)
                except OSError as error:
                    raise DataError(f"Could not move {source} to {target}: {error.strerror}. "
                                    f"The moves before it are done and logged in {root / LOG}; "
                                    "fix the cause and run the same command again (or "
                                    "--undo).") from None
                applied.moved.append((source, target))
    return applied


def undo(root: str | os.PathLike) -> Undone:
    """Move back every logged move not undone yet, latest first; the undo is logged too.

    Only moves imgclf made are undone: both places inside root (no link leading out), and the
    file where the move put it still the one moved (its logged sha256). A move never made
    (interrupted) is passed over; one whose old place is taken, or that fails any check, is
    left, and ``Undone.left`` says which and why.
    """
    root = Path(os.path.abspath(root))
    if not (root / LOG).is_file():
        return Undone()
    done = Undone()
    with FolderLock(root, "imgclf clean"), \
            open(root / LOG, "a", newline="", encoding="utf-8", errors=ESCAPE_BYTES) as log:
        writer = csv.writer(log)
        for source, target, digest in reversed(_standing_moves(_log_rows(root))):
            if not os.path.lexists(target):
                continue  # never made (interrupted), or moved on by hand
            problem = _unmovable(root, target) or _unmovable(root, source, made=False)
            if problem is None and digest and _sha256(target) != digest:
                problem = "it is not the file that was moved there (its content differs)"
            if problem is None and os.path.lexists(source):
                problem = f"its old place {source} is taken by another file"
            if problem is not None:
                done.left.append((target, problem))
                continue
            writer.writerow([time.strftime("%Y-%m-%d %H:%M:%S"), "undo", str(target),
                             str(source), digest])
            log.flush()
            os.fsync(log.fileno())
            try:
                source.parent.mkdir(parents=True, exist_ok=True)
                os.replace(target, source)
            except OSError as error:
                # the move stands after all: logged again, so a later undo tries it again
                writer.writerow([time.strftime("%Y-%m-%d %H:%M:%S"), "undo-failed",
                                 str(source), str(target), digest])
                log.flush()
                done.left.append((target, f"could not be moved back: {error.strerror}"))
                continue
            done.append((target, source))
    return done


def correct_csv(csv_file: str | os.PathLike, decisions: Sequence[Decision], *,
                path_column: str = "path", label_column: str = "label",
                root: str | os.PathLike | None = None) -> Path:
    """A corrected copy of a labels CSV (``NAME.cleaned.csv`` beside it, or
    ``NAME.cleaned-1.csv``, ... when that name is taken: an earlier copy is never
    overwritten): relabelled rows get their new label, removed rows are left out; the
    original is not touched."""
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
    target = _free(csv_file.with_name(f"{csv_file.stem}.cleaned.csv"))  # never overwritten
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


def class_folders(root: str | os.PathLike) -> list[str]:
    """The classes of class-folder data, read from the folders alone (nothing is decoded):
    the names of the folders that hold pictures, under the split folders if there are any.
    An apply interrupted after it emptied a class still finds the class here."""
    root = Path(root)
    names = set()
    for path in find_images(root):
        relative = path.relative_to(root).parts
        if len(relative) >= 2:
            names.add(relative[-2])
    for folder in (root, *(root / split for split in SPLIT_FOLDERS)):
        if folder.is_dir():  # emptied class folders still name their class
            names.update(entry.name for entry in folder.iterdir() if entry.is_dir()
                         and not entry.name.startswith((".", "_")))
    return sorted(names - set(SPLIT_FOLDERS))


def locate(path: str | os.PathLike, root: str | os.PathLike) -> Path:
    """A file named in issues.csv or decisions.csv, made absolute: a relative path is taken
    as given where something is there (issues.csv names files as `imgclf clean` was given
    them), else from the data folder. Absolute, since undo reads it back from the log."""
    path = Path(path).expanduser()
    if not path.is_absolute() and not os.path.lexists(path):
        path = Path(root) / path
    return Path(os.path.abspath(path))


def _latest(root: Path, decisions: Sequence[Decision]) -> list[Decision]:
    """The decisions, one per picture however its path was written, the last one counting."""
    latest: dict[str, Decision] = {}
    for decision in decisions:
        key = str(locate(decision.path, root))
        latest.pop(key, None)
        latest[key] = decision
    return list(latest.values())


def _unmovable(root: Path, path: Path, *, made: bool = True) -> str | None:
    """Why path is no picture cleaning may move (made: it exists now; else it is a place to
    move one to), or None. Inside root by name, and by where its folders really are."""
    if path == root or not path.is_relative_to(root):
        return f"is not inside {root}: nothing outside the data folder is moved"
    real_root = Path(os.path.realpath(root))
    ancestor = path.parent
    while not ancestor.exists() and ancestor != root:
        ancestor = ancestor.parent
    real = Path(os.path.realpath(ancestor))
    if not real.is_relative_to(real_root):
        return (f"is under {ancestor}, which leads to {real}, outside {root}: nothing outside "
                "the data folder is moved")
    if path.name in _OWN_FILES or path.suffix.lower() not in IMAGE_SUFFIXES:
        return "is not a picture: cleaning moves pictures, one by one"
    if made and path.is_dir() and not path.is_symlink():
        return "is a folder: cleaning moves pictures, one by one"
    return None


def _sha256(path: Path) -> str:
    """The content hash of a file (of a link's text, for a link)."""
    if os.path.islink(path):
        return hashlib.sha256(os.readlink(path).encode(errors="surrogateescape")).hexdigest()
    return file_sha256(path)


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


def _standing_moves(rows: list[tuple[str, str, str, str, str]]
                    ) -> list[tuple[Path, Path, str]]:
    """The logged moves (source, target, sha256), in order, less those an "undo" row has
    moved back since."""
    moves: list[tuple[Path, Path, str]] = []
    for _, action, source, target, digest in rows:
        if action != "undo":
            moves.append((Path(source), Path(target), digest))
            continue
        # an undo row moved `source` (the move's target) back to `target` (its source)
        for position in range(len(moves) - 1, -1, -1):
            if moves[position][:2] == (Path(target), Path(source)):
                del moves[position]
                break
    return moves


def _log_rows(root: Path) -> list[tuple[str, str, str, str, str]]:
    """The log's rows: time, action, source, target and sha256 ("" in logs made before it)."""
    path = root / LOG
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8", errors=ESCAPE_BYTES) as handle:
        return [(*row[:4], row[4] if len(row) > 4 else "")
                for row in list(csv.reader(handle))[1:] if len(row) >= 4]
