"""The review page of `imgclf clean DATA --review`: look at each flagged picture, then keep,
relabel or remove it; Apply moves the files (never deletes one).

The page reads the issues.csv that cleaning wrote (not finding.py itself, which needs the
training code), shows the flagged pictures as a grid filtered by kind of issue and by
class, and saves each decision to the decisions file the moment it is made
(``fixes.record_decision``), so closing the page loses nothing and opening it again shows
every decision taken. Apply hands the decisions to ``fixes.apply_decisions`` (or, for
CSV-labelled data, ``fixes.correct_csv``), which logs every move in DATA/cleaning-log.csv;
``imgclf clean DATA --undo`` moves them back.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import shutil
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from imgclf._files import printable
from imgclf.cleaning.fixes import (DECISIONS, DESCRIPTIONS, LOG, Applied, Decision, apply_decisions,
                                   correct_csv, locate, read_decisions, read_table, record_decision)
from imgclf.config import ServeConfig
from imgclf.data.decoding import load_image
from imgclf.data.sources import REMOVED_FOLDER
from imgclf.errors import DataError, ImageError, ImgclfError
from imgclf.serve import SERVE_HINT
from imgclf.serve.gradio_app import _gradio
from imgclf.serve.http import own_gradio_folder

ALL = "*"  # the filters' "everything" choice (no class folder is named *)
THUMBNAIL_SIDE = 192  # grid thumbnails: small enough to list hundreds, big enough to judge
PREVIEW_SIDE = 640  # the selected picture


@dataclass
class Flagged:
    """One flagged picture and every issue found on it (rows of issues.csv, surest first)."""

    path: Path  # absolute
    label: str | None
    split: str | None
    issues: list[dict[str, str]] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return list(dict.fromkeys(issue["kind"] for issue in self.issues))

    @property
    def suggested(self) -> str | None:
        return next((issue["suggested"] for issue in self.issues if issue.get("suggested")),
                    None)

    @property
    def score(self) -> float:
        return _number(self.issues[0].get("score"))


def read_issues(issues_file: str | os.PathLike, root: str | os.PathLike) -> list[Flagged]:
    """The pictures of an issues.csv, one per picture, in the file's order.

    Relative paths are taken from the folder the issues were found in (the current one, as
    `imgclf clean` runs), or else from the data folder `root`.

    Raises:
        DataError: no such file, or it lacks the path and kind columns.
    """
    root = Path(os.path.abspath(root))
    pictures: dict[Path, Flagged] = {}
    for row in read_table(issues_file, ("path", "kind"), "issues file",
                          hint=f": run imgclf clean {root} first"):
        path = locate(row["path"], root)
        picture = pictures.setdefault(
            path, Flagged(path, row.get("label") or None, row.get("split") or None))
        picture.issues.append(row)
    return list(pictures.values())


class ReviewPage:
    """The review page's state and handlers; ``build()`` lays them out as Gradio Blocks.

    Each handler takes and returns plain values, so tests call them without a browser.
    """

    def __init__(self, issues_file: str | os.PathLike, root: str | os.PathLike,
                 classes: Sequence[str], *, decisions_file: str | os.PathLike | None = None,
                 csv_file: str | os.PathLike | None = None,
                 thumbnail_side: int = THUMBNAIL_SIDE):
        self.root = Path(os.path.abspath(root))
        self.classes = list(classes)
        self.decisions_file = Path(decisions_file or self.root / DECISIONS)
        self.csv_file = Path(csv_file) if csv_file else None
        self.thumbnail_side = thumbnail_side
        self.pictures = read_issues(issues_file, self.root)
        self.by_path = {str(picture.path): picture for picture in self.pictures}
        self.moved: dict[str, Path] = {}  # path -> where Apply moved it, this session
        self._thumbnails: dict[str, str] = {}  # picture -> its thumbnail file
        self._folder: Path | None = None  # the thumbnails' folder, removed with the page
        self.decisions()  # a broken decisions file is said now, not on the page

    # --- what the page shows ----------------------------------------------------------

    def decisions(self) -> dict[str, Decision]:
        """The decisions in the file so far, by absolute path (the last per picture)."""
        if not self.decisions_file.is_file() or self.decisions_file.stat().st_size == 0:
            return {}
        return {str(locate(str(decision.path), self.root)): decision
                for decision in read_decisions(self.decisions_file)}

    def listing(self, kind: str = ALL, label: str = ALL) -> list[Flagged]:
        """The flagged pictures with an issue of `kind` and given class `label`; with a kind
        chosen, the surest of that kind first."""
        chosen = [picture for picture in self.pictures
                  if (label in (ALL, None) or picture.label == label)
                  and (kind in (ALL, None) or kind in picture.kinds)]
        if kind not in (ALL, None):
            chosen.sort(key=lambda picture: -max(_number(issue.get("score"))
                                                 for issue in picture.issues
                                                 if issue["kind"] == kind))
        return chosen

    def caption(self, picture: Flagged, decision: Decision | None) -> str:
        """The text under a thumbnail: name, given -> suggested class, issue, decision."""
        parts = [printable(picture.path.name), picture.label or "no label"]
        if picture.suggested and picture.suggested != picture.label:
            parts[-1] += f" -> {picture.suggested}"
        parts.append(f"{'+'.join(picture.kinds)} {picture.score:.2f}")
        if str(picture.path) in self.moved or (decision and not picture.path.exists()):
            parts.append("moved")
        elif decision:
            parts.append(f"decided: {_decision_text(decision)}")
        return " | ".join(parts)

    def picture(self, path: str | os.PathLike, side: int = PREVIEW_SIDE):
        """The picture shrunk to `side`; a grey card saying why where it cannot be read."""
        try:
            return load_image(path, max_side=side)
        except ImageError as error:
            return placeholder(f"cannot be read: {error.reason}" if os.path.lexists(path)
                               else "no longer here: moved", side)

    def thumbnail(self, path: str | os.PathLike) -> str:
        """The grid's thumbnail of a picture: a small JPEG file, written once. Files, not
        pictures: the page hands Gradio the whole grid after every decision, and a file
        costs it a copy where a picture costs an encoding."""
        key = str(path)
        if key not in self._thumbnails:
            if self._folder is None:
                parent = os.environ.get("GRADIO_TEMP_DIR")  # serve_review's own, if set
                if parent:
                    os.makedirs(parent, exist_ok=True)
                self._folder = Path(tempfile.mkdtemp(prefix="imgclf-review-", dir=parent))
                self._cleanup = weakref.finalize(self, shutil.rmtree, self._folder, True)
            target = self._folder / f"{len(self._thumbnails)}.jpg"
            self.picture(path, self.thumbnail_side).save(target, quality=85)
            self._thumbnails[key] = str(target)
        return self._thumbnails[key]

    def details(self, path: str) -> str:
        """Markdown about one picture: where it is, its classes, every issue, the decision."""
        picture = self.by_path[path]
        where = self._code(picture.path) + (f", {picture.split}" if picture.split else "")
        head = (f"**{_markdown(picture.path.name)}** ({where})  \nGiven class: "
                f"**{_markdown(picture.label or 'none')}**"
                + (f" · suggested: **{_markdown(picture.suggested)}**"
                   if picture.suggested else ""))
        found = []
        for issue in picture.issues:
            kind = issue["kind"]
            text = (f"- **{kind}** ({DESCRIPTIONS.get(kind, kind)}): score "
                    f"{_number(issue.get('score')):.2f}")
            if issue.get("detail"):
                text += f"; {_markdown(issue['detail'])}"
            if issue.get("other"):
                text += f"; copy of {self._code(locate(issue['other'], self.root))}"
            found.append(text)
        decision = self.decisions().get(path)
        state = [f"Decision: **{_markdown(_decision_text(decision))}**" if decision else
                 "Decision: none yet"]
        if path in self.moved:
            state.append(f"Moved to {self._code(self.moved[path])}.")
        elif not picture.path.exists():
            state.append("This file is no longer here (moved by Apply).")
        return "\n\n".join([head, "\n".join(found), "  \n".join(state)])

    def counts(self, listing: Sequence[Flagged]) -> str:
        decided = self.decisions()
        done = sum(str(picture.path) in decided for picture in listing)
        return (f"{len(listing)} of {len(self.pictures)} flagged pictures shown, {done} of "
                f"them decided ({len(decided)} decision(s) in all, saved in "
                f"{self._code(self.decisions_file)} as you make them).")

    # --- what the page does --------------------------------------------------------------

    def decide(self, path: str | None, action: str, label: str | None = None) -> Decision:
        """Record keep, relabel (to `label`) or remove for one picture, at once, in the
        decisions file; returns the decision.

        Raises:
            DataError: no picture chosen, no class (or its own) to relabel to, or the file
                was already moved.
        """
        if not path or path not in self.by_path:
            raise DataError("Click a picture first.")
        picture = self.by_path[path]
        if path in self.moved or not picture.path.exists():
            raise DataError(f"{picture.path.name} was already moved; imgclf clean "
                            f"{self.root} --undo moves it back.")
        if action == "relabel":
            if not label:
                raise DataError("Choose the class to relabel it to.")
            if label == picture.label:
                raise DataError(f"{picture.path.name} is already labelled {label}: choose "
                                "another class, or Keep.")
            if self.classes and label not in self.classes:
                raise DataError(f"{label!r} is not one of the classes "
                                f"({', '.join(self.classes)}).")
        decision = Decision(picture.path, action, label if action == "relabel" else None)
        record_decision(self.decisions_file, decision)
        return decision

    def apply(self) -> str:
        """Carry out every decision in the file; Markdown saying what moved and how to undo."""
        if not self.decisions():
            return "No decisions yet: choose keep, relabel or remove for some pictures first."
        # the page carries out decisions on the pictures it shows, and no others: a
        # decisions.csv that came with the data cannot move what no one reviewed here
        decisions, others = [], 0
        for decision in read_decisions(self.decisions_file):
            if str(locate(str(decision.path), self.root)) in self.by_path:
                decisions.append(decision)
            else:
                others += 1
        if not decisions:
            return (f"None of the {others} decision(s) in {self._code(self.decisions_file)} is "
                    "about a picture on this page: nothing was moved.")
        if self.csv_file is not None:
            target = correct_csv(self.csv_file, decisions,
                                 root=Path(os.path.abspath(self.csv_file)).parent)
            self._archive_decisions()
            return (f"Wrote the corrected labels to {self._code(target)}; "
                    f"{self._code(self.csv_file)} is unchanged.")
        applied = apply_decisions(self.root, decisions, classes=self.classes)
        for source, target in applied.moved:
            self.moved[str(source)] = target
        self._archive_decisions()
        return self._applied_text(applied) + (
            f"\n\n{others} decision(s) about pictures not on this page were left undone."
            if others else "")

    def _archive_decisions(self) -> None:
        """Applied decisions move aside (decisions-applied-TIME.csv), so that a later Apply,
        after an undo say, does not carry them out again."""
        import time

        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.decisions_file.rename(self.decisions_file.with_name(
            f"{self.decisions_file.stem}-applied-{stamp}{self.decisions_file.suffix}"))

    def _applied_text(self, applied: Applied, limit: int = 50) -> str:
        lines = [f"Moved {len(applied.moved)} file(s)"
                 + (f" ({applied.already} already moved)" if applied.already else "")
                 + (f"; {len(applied.skipped)} not found" if applied.skipped else "") + "."]
        lines += [f"- {self._code(source)} -> {self._code(target)}"
                  for source, target in applied.moved[:limit]]
        if len(applied.moved) > limit:
            lines.append(f"- ... and {len(applied.moved) - limit} more")
        lines.append(f"\nEvery move is in {self._code(self.root / LOG)}; "
                     f"{_code(f'imgclf clean {printable(self.root)} --undo')} moves them back.")
        return "\n".join(lines)

    def close(self) -> None:
        """Remove the thumbnails' folder now (also done when the page is collected)."""
        cleanup = getattr(self, "_cleanup", None)
        if cleanup is not None:
            cleanup()

    # --- the page's event handlers: Gradio values in, Gradio values out -----------------

    def on_show(self, kind: str, label: str, selected: str | None = None):
        """The grid for the filters: (gallery update, its paths, counts text)."""
        gr = _gradio()
        listing = self.listing(kind, label)
        decided = self.decisions()
        items = [(self.thumbnail(picture.path),
                  self.caption(picture, decided.get(str(picture.path))))
                 for picture in listing]
        paths = [str(picture.path) for picture in listing]
        index = paths.index(selected) if selected in paths else None
        return gr.update(value=items, selected_index=index), paths, self.counts(listing)

    def on_view(self, path: str | None):
        """The selected picture: (its path, preview, details, relabel choice, the copied
        picture)."""
        gr = _gradio()
        if not path:
            return (None, gr.update(value=None), "Click a picture to review it.",
                    gr.update(value=None), gr.update(value=None, visible=False))
        picture = self.by_path[path]
        others = [issue["other"] for issue in picture.issues if issue.get("other")]
        other = (gr.update(value=self.picture(locate(others[0], self.root),
                                              PREVIEW_SIDE // 2), visible=True)
                 if others else gr.update(value=None, visible=False))
        default = picture.suggested if picture.suggested != picture.label else None
        return (path, gr.update(value=self.picture(picture.path)),
                self.details(path), gr.update(value=default), other)

    def on_filter(self, kind: str, label: str):
        """A filter changed: the new grid, nothing selected."""
        return (*self.on_show(kind, label), *self.on_view(None))

    def on_select(self, paths: list[str], index: int):
        """A thumbnail was clicked: the picture at `index` of the grid."""
        chosen = (isinstance(index, int) and not isinstance(index, bool)
                  and 0 <= index < len(paths or ()))  # an event from elsewhere: ignored
        return self.on_view(paths[index] if chosen else None)

    def on_decide(self, action: str, path: str | None, new_label: str | None, kind: str,
                  label: str, paths: list[str]):
        """Keep, relabel or remove clicked: saved at once, then on to the next picture of
        the grid (a review is one click per picture): (status, grid..., selected...)."""
        gr = _gradio()
        try:
            decision = self.decide(path, action, new_label)
        except ImgclfError as error:
            raise gr.Error(str(error), print_exception=False) from None
        position = paths.index(path) if path in paths else -1
        following = paths[position + 1] if 0 <= position < len(paths) - 1 else path
        status = f"Saved: {_decision_text(decision)} {self._code(decision.path)}."
        return (status, *self.on_show(kind, label, following), *self.on_view(following))

    def on_apply(self, kind: str, label: str, path: str | None):
        """Apply clicked: (what moved, grid..., selected...)."""
        gr = _gradio()
        try:
            text = self.apply()
        except ImgclfError as error:
            raise gr.Error(str(error), print_exception=False) from None
        return (text, *self.on_show(kind, label, path), *self.on_view(path))

    # --- the page --------------------------------------------------------------------------

    def build(self, *, title: str | None = None):
        """The Gradio Blocks of the page (one event at a time: decisions append to one file)."""
        gr = _gradio()
        title = title or f"Review the flagged pictures of {printable(self.root.name)}"
        kinds = list(dict.fromkeys(kind for picture in self.pictures for kind in picture.kinds))
        kind_choices = [(f"all kinds ({len(self.pictures)})", ALL)] + [
            (f"{kind}: {DESCRIPTIONS.get(kind, kind)} ({len(self.listing(kind))})", kind)
            for kind in sorted(kinds, key=_kind_order)]
        class_choices = [("all classes", ALL)] + [
            (f"{name} ({len(self.listing(label=name))})", name) for name in self.classes]

        def select(paths, event):
            return self.on_select(paths, event.index)

        # set here, not in the signature: under postponed annotations Gradio cannot resolve
        # a local name, and would pass no event
        select.__annotations__ = {"event": gr.SelectData}

        with gr.Blocks(title=title, analytics_enabled=False) as demo:
            gr.Markdown(f"# {_markdown(title)}\nClick a picture, then keep, relabel or "
                        "remove it: each decision is saved at once. **Apply** moves the files "
                        f"(removed ones to {self._code(self.root / REMOVED_FOLDER)}); nothing "
                        "is ever deleted.")
            with gr.Row():
                kind = gr.Dropdown(kind_choices, value=ALL, label="Kind of issue",
                                   elem_id="kind-filter")
                label = gr.Dropdown(class_choices, value=ALL, label="Given class",
                                    elem_id="class-filter")
            counts = gr.Markdown(elem_id="counts")
            paths = gr.State([])  # the grid's pictures, in order
            current = gr.State(None)  # the selected picture's path
            with gr.Row():
                with gr.Column(scale=3):
                    grid = gr.Gallery(label="Flagged pictures", columns=5, height=720,
                                      allow_preview=False, object_fit="contain",
                                      format="jpeg", elem_id="flagged")
                with gr.Column(scale=2):
                    picture = gr.Image(label="Selected picture", type="pil", height=360,
                                       interactive=False, elem_id="selected")
                    details = gr.Markdown("Click a picture to review it.", elem_id="details")
                    new_label = gr.Dropdown(self.classes, value=None, label="Relabel to",
                                            elem_id="new-label")
                    with gr.Row():
                        keep = gr.Button("Keep", elem_id="keep")
                        relabel = gr.Button("Relabel", variant="primary", elem_id="relabel")
                        remove = gr.Button("Remove", variant="stop", elem_id="remove")
                    status = gr.Markdown(elem_id="status")
                    other = gr.Image(label="The picture it copies", type="pil", height=240,
                                     interactive=False, visible=False, elem_id="other")
            apply_button = gr.Button("Apply the decisions (move the files)", elem_id="apply")
            result = gr.Markdown(elem_id="applied")

            listed = [grid, paths, counts]
            viewed = [current, picture, details, new_label, other]
            demo.load(self.on_show, [kind, label], listed)
            for control in (kind, label):
                control.change(self.on_filter, [kind, label], listed + viewed)
            grid.select(select, paths, viewed)
            for button, action in ((keep, "keep"), (relabel, "relabel"), (remove, "remove")):
                button.click(functools.partial(self.on_decide, action),
                             [current, new_label, kind, label, paths],
                             [status, *listed, *viewed])
            apply_button.click(self.on_apply, [kind, label, current],
                               [result, *listed, *viewed])
        demo.queue(default_concurrency_limit=1)
        return demo

    def _shown(self, path: str | os.PathLike) -> str:
        """A path as the page prints it: under the data folder, relative to it."""
        path = Path(path)
        try:
            path = path.relative_to(self.root)
        except ValueError:
            pass
        return printable(path)

    def _code(self, path: str | os.PathLike) -> str:
        """A path as Markdown code: shown as it is, whatever its characters."""
        return _code(self._shown(path))


def build_review(issues_file: str | os.PathLike, root: str | os.PathLike,
                 classes: Sequence[str], *, decisions_file: str | os.PathLike | None = None,
                 csv_file: str | os.PathLike | None = None):
    """The review page for the issues `imgclf clean` found, as Gradio Blocks.

    Args:
        issues_file: the issues.csv that cleaning wrote.
        root: the data folder (decisions.csv, cleaning-log.csv and _removed/ go in it).
        classes: the class names a picture can be relabelled to.
        decisions_file: where decisions are saved as they are made (default
            ROOT/decisions.csv); decisions already in it are shown.
        csv_file: for CSV-labelled data, the labels CSV: Apply writes a corrected copy
            beside it instead of moving files.

    Example:
        >>> page = build_review("data/cats/issues.csv", "data/cats", ["house_cat", "wild_cat"])
        >>> page.launch(server_name="127.0.0.1", server_port=7861)
    """
    return ReviewPage(issues_file, root, classes, decisions_file=decisions_file,
                      csv_file=csv_file).build()


def serve_review(issues_file: str | os.PathLike, root: str | os.PathLike,
                 classes: Sequence[str], *, decisions_file: str | os.PathLike | None = None,
                 csv_file: str | os.PathLike | None = None, host: str = "127.0.0.1",
                 port: int = ServeConfig.review_port) -> None:
    """Serve the review page until interrupted (what `imgclf clean DATA --review` does).

    Example:
        >>> serve_review("data/cats/issues.csv", "data/cats", ["house_cat", "wild_cat"])
        Review 31 flagged pictures on http://127.0.0.1:7861 ...
    """
    try:
        import uvicorn
        from fastapi import FastAPI
    except ImportError:
        raise ImgclfError(SERVE_HINT) from None
    gr = _gradio()
    # SIGTERM handled from before the page exists to after its folders are removed
    with _stopping_on_sigterm(), own_gradio_folder():
        page = ReviewPage(issues_file, root, classes, decisions_file=decisions_file,
                          csv_file=csv_file)
        if not page.pictures:
            print(f"Nothing was flagged in {printable(issues_file)}: nothing to review.")
            return
        app = gr.mount_gradio_app(FastAPI(), page.build(), path="/")
        print(f"Review {len(page.pictures)} flagged pictures on http://{host}:{port} "
              f"(decisions are saved to {printable(page.decisions_file)} as you make them; "
              "Ctrl+C stops)", flush=True)
        try:
            uvicorn.run(app, host=host, port=port, log_level="warning")
        finally:
            page.close()


@contextlib.contextmanager
def _stopping_on_sigterm():
    """SIGTERM ends the process as Ctrl+C does, through every `finally` (the temporary
    folders are removed); uvicorn hands a signal it caught back to this handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)

    def stop(number, frame):
        raise SystemExit(128 + number)

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def placeholder(text: str, side: int = THUMBNAIL_SIDE):
    """A grey card with `text` on it, in place of a picture that cannot be shown."""
    import textwrap

    from PIL import Image, ImageDraw, ImageFont

    size = max(10, side // 14)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one small bitmap font
        font, size = ImageFont.load_default(), 11
    card = Image.new("RGB", (side, side), (200, 200, 200))
    lines = textwrap.wrap(printable(text), width=max(8, int(1.7 * side / size)))
    ImageDraw.Draw(card).multiline_text((side // 16, side // 16), "\n".join(lines),
                                        fill=(60, 60, 60), font=font)
    return card


def _decision_text(decision: Decision) -> str:
    return f"relabel to {decision.label}" if decision.action == "relabel" else decision.action


def _kind_order(kind: str) -> int:
    order = list(DESCRIPTIONS)
    return order.index(kind) if kind in order else len(order)


def _number(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return 0.0


def _code(text: str) -> str:
    """Text as Markdown code, shown as it is."""
    return "`" + text.replace("`", "'") + "`"


def _markdown(text: Any) -> str:
    """Text shown as itself in Markdown (file names with _ or * are not emphasis)."""
    text = printable(text)
    for character in "\\`*_[]<>#|":
        text = text.replace(character, "\\" + character)
    return text
