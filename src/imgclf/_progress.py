"""Progress bars and console output shared by every long-running step (rich)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Callable, TypeVar

T = TypeVar("T")


def console():
    from rich.console import Console

    return Console(stderr=True)


def progress(items: Iterable[T], *, total: int | None, description: str, enabled: bool = True,
             weight: Callable[[T], int] = lambda item: 1) -> Iterator[T]:
    """Iterate with a rich progress bar on stderr (plain iteration when disabled).

    weight: how far one item moves the bar, e.g. the number of images in a batch.
    """
    if not enabled:
        yield from items
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=console(), transient=False) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task, weight(item))
