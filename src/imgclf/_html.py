"""Small HTML pieces: how imgclf's objects show themselves in a notebook (``_repr_html_``)
and the blocks the HTML report is built from. Pillow and matplotlib figures become inline
base64 images, so the HTML needs no other file."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from typing import Any

# Rows a notebook table shows before it says how many more there are.
ROWS = 20


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def figure_img(figure, *, css: str = "fig", dpi: int = 90) -> str:
    """A matplotlib figure as an inline PNG <img>."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    css = f" class='{css}'" if css else ""
    return f"<img{css} src='data:image/png;base64,{encoded}'>"


def picture_img(picture, *, alt: str = "", side: int | None = None) -> str:
    """A PIL picture as an inline JPEG <img> (its longer side at most `side` pixels)."""
    picture = picture.convert("RGB")
    if side:
        picture = picture.copy()
        picture.thumbnail((side, side))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=80)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f"<img src='data:image/jpeg;base64,{encoded}' alt='{escape(alt)}'>"


def cards(values: Iterable[tuple[str, str]]) -> str:
    """Headline figures as a row of boxes: (name, value shown)."""
    boxes = "".join(
        "<div style='display:inline-block;border:1px solid #d0d7de;border-radius:6px;"
        "padding:4px 12px;margin:0 8px 8px 0'>"
        f"<b style='display:block;font-size:1.3em'>{escape(value)}</b>{escape(name)}</div>"
        for name, value in values)
    return f"<div class=cards>{boxes}</div>"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, limit: int = ROWS,
          numbers: Sequence[int] = ()) -> str:
    """A table of plain values (escaped), at most `limit` rows and a line saying how many
    more; numbers: the columns aligned right. A value of type Html is not escaped."""
    head = "".join(f"<th>{escape(name)}</th>" for name in header)
    body = "".join(
        "<tr>" + "".join(
            f"<td{' style=text-align:right' if column in numbers else ''}>"
            f"{value if isinstance(value, Html) else escape(value)}</td>"
            for column, value in enumerate(row)) + "</tr>"
        for row in rows[:limit])
    more = (f"<tr><td colspan={len(header)}>... and {len(rows) - limit} more</td></tr>"
            if len(rows) > limit else "")
    return f"<table><tr>{head}</tr>{body}{more}</table>"


class Html(str):
    """Text that is already HTML (table cells that hold a picture or markup)."""


def percent(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.1%}"
