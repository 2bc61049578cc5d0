"""Progress bars and console output shared by every long-running step (rich)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Callable, TypeVar

T = TypeVar("T")


def console():
    from rich.console import Console

    return Console(stderr=True)


def bar(*columns, transient: bool = False, enabled: bool = True):
    """A rich Progress on stderr. A transient bar (one repeated every epoch) is left out when
    stderr is no terminal: it would leave only a blank line in the log."""
    from rich.progress import Progress

    out = console()
    return Progress(*columns, console=out, transient=transient,
                    disable=not enabled or (transient and not out.is_terminal))


def progress(items: Iterable[T], *, total: int | None, description: str, enabled: bool = True,
             weight: Callable[[T], int] = lambda item: 1, transient: bool = False
             ) -> Iterator[T]:
    """Iterate with a rich progress bar on stderr (plain iteration when disabled).

    weight: how far one item moves the bar, e.g. the number of images in a batch.
    transient: remove the bar when done (for steps repeated every epoch).
    """
    if not enabled:
        yield from items
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    with bar(*columns, transient=transient) as shown:
        task = shown.add_task(description, total=total)
        for item in items:
            yield item
            shown.advance(task, weight(item))


@contextmanager
def status(message: str, *, enabled: bool = True) -> Iterator[None]:
    """A spinner with a message while a step of unknown length runs (a terminal), or the
    message once (a log)."""
    if not enabled:
        yield
        return
    out = console()
    if not out.is_terminal:
        out.print(f"{message}...")
        yield
        return
    with out.status(message):
        yield


def data_summary_tables(summary: dict) -> list:
    """Rich renderables for ImageData.summary(): counts per class, then problems found."""
    from rich.table import Table

    counts = summary["counts"]
    splits = [s for s in ("train", "valid", "test") if any(c[s] for c in counts.values())]
    # no input size here: probe and auto choose theirs later, and print it when they start
    multi = summary.get("multi_label", False)
    table = Table(title=f"{len(counts)} labels, pictures with each" if multi
                  else f"{len(counts)} classes, pictures per split")
    table.add_column("label" if multi else "class")
    for split in splits:
        table.add_column(split, justify="right")
    for label, row in counts.items():
        style = "yellow" if label in summary["few_images"] else None
        table.add_row(label, *(str(row[s]) for s in splits), style=style)
    totals = (summary["pictures"] if multi else
              {s: sum(c[s] for c in counts.values()) for s in splits})
    table.add_row("[bold]pictures" if multi else "[bold]total",
                  *(f"[bold]{totals[s]}" for s in splits))
    if summary.get("unknown_pictures"):
        table.add_row("[italic]_unknown (no class)", str(summary["unknown_pictures"]),
                      *("" for _ in splits[1:]))
    tables = [table]
    problems = [
        ("Skipped (unreadable)", summary["skipped"], "red"),
        ("Suspicious (kept, check them)", summary["suspicious"], "yellow"),
        ("Leakage: the same file in training and validation/test", summary["leakage"], "red"),
        ("Duplicates within a split", summary["duplicates"], "yellow"),
    ]
    for title, rows, colour in problems:
        if not rows:
            continue
        listing = Table(title=f"[{colour}]{title}: {len(rows)}", title_justify="left")
        listing.add_column("file", overflow="fold")
        listing.add_column("reason / same as", overflow="fold")
        for first, second in rows[:50]:
            listing.add_row(first, second)
        if len(rows) > 50:
            listing.add_row(f"... and {len(rows) - 50} more", "")
        tables.append(listing)
    return tables
