"""One self-contained HTML report from an Evaluation: figures and thumbnails inline, no requests."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imgclf._files import write_text
from imgclf._html import escape as _e
from imgclf._html import figure_img as _figure
from imgclf._html import picture_img
from imgclf.data.decoding import load_image
from imgclf.data.imagedata import ImageData
from imgclf.errors import ImageError
from imgclf.plots import overlay, plot_history

# The report draws from an Evaluation (metrics.py, which imports this module for its
# .report()) and, when given, the Issues cleaning found (a later stage): both are typed Any
# here, as a module below them in the pipeline cannot import them.
Evaluation = Any
Issues = Any

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1f2328;
background:#f6f8fa}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{margin:0 0 4px}h2{margin-top:36px;border-bottom:1px solid #d0d7de;padding-bottom:6px}
.sub{color:#57606a}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:18px 0}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:12px 18px;min-width:120px}
.card b{display:block;font-size:1.6em}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #d0d7de;padding:4px 10px;
text-align:left}th{background:#eaeef2}td.n{text-align:right;font-variant-numeric:tabular-nums}
img.fig{max-width:100%;background:#fff;border:1px solid #d0d7de;border-radius:6px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:12px}
.tile{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:6px;font-size:.85em}
.tile img{width:100%;height:170px;object-fit:cover;border-radius:4px}
.tile .near img{width:32%;height:56px;margin-right:1%}
.wrong{color:#cf222e;font-weight:600}.figs{display:flex;flex-wrap:wrap;gap:16px}
details{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:8px 12px}
pre{white-space:pre-wrap;font-size:.85em}
"""


def write_report(evaluation: Evaluation, path: str | os.PathLike, *,
                 data: ImageData | None = None, title: str | None = None, top_k: int = 12,
                 issues: Issues | None = None) -> Path:
    """Render the report and write it; returns the path.

    Example:
        >>> write_report(evaluate(model, data), "report.html", data=data)
    """
    return write_text(path, render_report(evaluation, data=data, title=title, top_k=top_k,
                                          issues=issues))


def render_report(evaluation: Evaluation, *, data: ImageData | None = None,
                  title: str | None = None, top_k: int = 12, issues: Issues | None = None
                  ) -> str:
    """The report as one HTML string."""
    info = evaluation.info
    summary = evaluation.summary()
    title = title or f"imgclf report: {info.backbone if info else 'model'}, " \
                     f"{len(evaluation.classes)} classes"
    parts = [
        f"<h1>{_e(title)}</h1>",
        f"<div class=sub>{_e(evaluation.split)} split, {summary['pictures']} pictures; "
        f"generated {_e(time.strftime('%Y-%m-%d %H:%M'))}</div>",
        _cards(summary),
        "<h2>Confusion matrix</h2><div class=figs>",
        _figure(evaluation.plot_confusion_matrix()),
        _figure(evaluation.plot_confusion_matrix(normalize=True)),
        "</div>",
        "<h2>Most confused</h2>", _most_confused(evaluation),
        "<h2>Top losses</h2><p class=sub>The pictures the model got most wrong: predicted / "
        "actual, loss, probability of the prediction. Mislabelled photos often show up here. "
        "The heat marks where the evidence for the prediction lies; the nearest training "
        "pictures' labels follow, with their similarity.</p>", _top_losses(evaluation, top_k),
        "<h2>Per class</h2><div class=figs>", _per_class_table(evaluation),
        _figure(evaluation.plot_per_class()), "</div>",
    ]
    if evaluation.outlier_scores is not None:
        parts += ["<h2>Unknown pictures</h2>", _unknown(evaluation, top_k)]
    history = info.history if info else ()
    if len(history) > 1:
        parts += ["<h2>Training</h2>", _figure(plot_history(history))]
    elif history:  # one row (a probe): a chart of one dot says nothing a sentence cannot
        row = history[0]
        parts += ["<h2>Training</h2>", f"<p>One {_e(str(row.get('phase', 'epoch')))} step: "
                  f"train loss {row.get('train_loss', float('nan')):.4f}, validation loss "
                  f"{row.get('valid_loss', float('nan')):.4f}, accuracy "
                  f"{row.get('accuracy', float('nan')):.4f}, "
                  f"{row.get('seconds', 0):.0f} s.</p>"]
    parts += ["<h2>Data</h2>", _data_section(evaluation, data)]
    if issues is not None:
        parts += ["<h3>Issues found in the data (imgclf clean)</h3>", _issues(issues, top_k)]
    settings = {k: v for k, v in info.to_dict().items()
                if k in ("backbone", "input", "head", "training", "data", "augment")} if info else {}
    if settings:
        parts += ["<h2>Settings</h2><details><summary>model and training settings</summary><pre>",
                  _e(json.dumps(settings, indent=1, default=str)), "</pre></details>"]
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body><main>"
            + "\n".join(parts) + "</main></body></html>")


def _cards(summary: dict[str, Any]) -> str:
    cards = [("accuracy", f"{summary['accuracy']:.1%}"), ("error rate", f"{summary['error_rate']:.1%}"),
             ("loss", f"{summary['loss']:.3f}"), ("macro F1", f"{summary['macro_f1']:.3f}"),
             ("pictures", str(summary["pictures"])), ("skipped", str(summary["skipped"]))]
    return "<div class=cards>" + "".join(
        f"<div class=card><b>{_e(value)}</b>{_e(name)}</div>" for name, value in cards) + "</div>"


def _most_confused(evaluation: Evaluation) -> str:
    pairs = evaluation.most_confused()[:20]
    if not pairs:
        return "<p>No mistakes.</p>"
    rows = "".join(f"<tr><td>{_e(a)}</td><td>{_e(p)}</td><td class=n>{n}</td></tr>"
                   for a, p, n in pairs)
    return f"<table><tr><th>actual</th><th>predicted as</th><th>times</th></tr>{rows}</table>"


def _thumbnail(path: Path, *lines: str, explanation: Any = None) -> str:
    """One picture, inline as a small JPEG, with caption lines (already HTML).

    explanation: the picture's Explanation (Evaluation.explain): the picture the network saw,
    with the evidence for its answer as heat, and the labels of the nearest training pictures.
    """
    if explanation is not None and explanation.nearest:
        shown = explanation.nearest[:3]
        pictures = [(n, n.picture(side=120)) for n in shown]
        lines = (*lines, "<div class=near>" + "".join(
            picture_img(small, alt=n.label) for n, small in pictures if small is not None)
            + "</div><div class=sub>nearest: " + ", ".join(
                f"{_e(n.label)} {n.similarity:.2f}" for n in shown) + "</div>")
    try:
        picture = (Image.fromarray(overlay(explanation.picture, explanation.heatmap))
                   if explanation is not None else load_image(path, max_side=240))
        image = picture_img(picture, alt=path.name)
    except ImageError:
        image = "<div>unreadable</div>"
    return (f"<div class=tile>{image}" + "".join(lines)
            + f"<div class=sub>{_e(path.name)}</div></div>")


def _top_losses(evaluation: Evaluation, k: int) -> str:
    tiles = []
    for entry in evaluation.top_losses(k):
        css = " class=wrong" if entry.predicted != entry.actual else ""
        tiles.append(_thumbnail(entry.path, f"<div{css}>{_e(entry.predicted)} / "
                                f"{_e(entry.actual)}</div>", f"<div>loss {entry.loss:.2f}, p "
                                f"{entry.probability:.2f}</div>",
                                explanation=evaluation.explain(entry.path, entry.predicted)))
    return "<div class=grid>" + "".join(tiles) + "</div>"


def _unknown(evaluation: Evaluation, k: int) -> str:
    """The unknown answer: figures, in-domain pictures called unknown, strangers let through."""
    summary = evaluation.summary()
    parts = [f"<p>{summary['acceptance']:.1%} of the {summary['pictures']} pictures of the "
             f"model's classes are accepted (accuracy on them {summary['accepted_accuracy']:.1%}"
             f"); outlier threshold {evaluation.threshold:.3f}.</p>"]
    if summary["strangers_flagged"] is not None:
        parts.append(f"<p>{summary['strangers_flagged']:.1%} of {summary['strangers']} pictures "
                     f"of none of the classes are called unknown (AUROC "
                     f"{summary['unknown_auroc']:.3f}).</p>")
    rejected = np.flatnonzero(~evaluation.accepted)
    rejected = rejected[np.argsort(-evaluation.outlier_scores[rejected])][:k]
    if len(rejected):
        parts.append("<h3>Pictures of the classes called unknown</h3><div class=grid>" + "".join(
            _thumbnail(evaluation.paths[i], f"<div class=wrong>unknown / "
                       f"{_e(evaluation.classes[evaluation.targets[i]])}</div>",
                       f"<div>outlier score {evaluation.outlier_scores[i]:.3f}</div>",
                       explanation=evaluation.explain(
                           evaluation.paths[i], evaluation.classes[evaluation.predictions[i]]))
            for i in rejected) + "</div>")
    if evaluation.stranger_scores is not None:
        passed = np.flatnonzero(evaluation.stranger_scores <= evaluation.threshold)
        passed = passed[np.argsort(evaluation.stranger_scores[passed])][:k]
        if len(passed):
            parts.append("<h3>Pictures of none of the classes accepted</h3><div class=grid>"
                         + "".join(_thumbnail(evaluation.strangers[i], "<div class=wrong>"
                                              "accepted</div>", f"<div>outlier score "
                                              f"{evaluation.stranger_scores[i]:.3f}</div>")
                                   for i in passed) + "</div>")
    return "\n".join(parts)


def _per_class_table(evaluation: Evaluation) -> str:
    rows = "".join(
        f"<tr><td>{_e(r['class'])}</td><td class=n>{r['precision']:.3f}</td>"
        f"<td class=n>{r['recall']:.3f}</td><td class=n>{r['f1']:.3f}</td>"
        f"<td class=n>{r['support']}</td></tr>"
        # weakest first: with 120 classes, the ones to look at lead the table
        for r in sorted(evaluation.per_class(), key=lambda row: (row["f1"], row["class"])))
    return ("<p>Sorted by F1, weakest first.</p><table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th>"
            f"<th>support</th></tr>{rows}<tr><td><b>macro</b></td><td></td><td></td>"
            f"<td class=n><b>{evaluation.macro_f1:.3f}</b></td><td></td></tr>"
            f"<tr><td><b>weighted</b></td><td></td><td></td><td class=n>"
            f"<b>{evaluation.weighted_f1:.3f}</b></td><td></td></tr></table>")


def _data_section(evaluation: Evaluation, data: ImageData | None) -> str:
    if data is not None:
        summary = data.summary()
        counts, skipped = summary["counts"], summary["skipped"]
        suspicious, leakage = summary["suspicious"], summary["leakage"]
    else:
        counts = evaluation.info.counts if evaluation.info else {}
        skipped, suspicious, leakage = [], [], []
    skipped = list(skipped) + [s for s in evaluation.skipped if s not in skipped]
    parts = []
    if counts:
        splits = [s for s in ("train", "valid", "test") if any(c.get(s) for c in counts.values())]
        header = "".join(f"<th>{s}</th>" for s in splits)
        rows = "".join(f"<tr><td>{_e(label)}</td>"
                       + "".join(f"<td class=n>{row.get(s, 0)}</td>" for s in splits) + "</tr>"
                       for label, row in counts.items())
        parts.append(f"<table><tr><th>class</th>{header}</tr>{rows}</table>")
    for name, rows in (("Skipped files", skipped), ("Suspicious files", suspicious),
                       ("Leakage (same file in training and validation)", leakage)):
        if rows:
            items = "".join(f"<tr><td>{_e(a)}</td><td>{_e(b)}</td></tr>" for a, b in rows[:100])
            parts.append(f"<h3>{_e(name)}: {len(rows)}</h3><table>{items}</table>")
    return "\n".join(parts) or "<p>No data summary available.</p>"


def _issues(issues: Issues, k: int) -> str:
    """Counts per kind, then the surest few of each kind as thumbnails."""
    counts = {kind: count for kind, count in issues.summary().items() if count}
    if not counts:
        return "<p>No issues found.</p>"
    parts = ["<p>" + ", ".join(f"{count} {_e(kind.replace('_', '-'))}"
                               for kind, count in counts.items())
             + (f" among {issues.pictures} pictures" if issues.pictures else "")
             + "; the full list is issues.csv, and "
             "<code>imgclf clean DATA --review</code> shows them to fix.</p><div class=grid>"]
    shown = max(1, k // len(counts))
    for kind in counts:
        for issue in issues.of_kind(kind)[:shown]:
            change = (f"{_e(issue.label)} &rarr; {_e(issue.suggested)}" if issue.suggested
                      else _e(issue.label))
            parts.append(_thumbnail(issue.path, f"<div class=wrong>{_e(kind)}</div>",
                                    f"<div>{change}, score {issue.score:.2f}</div>",
                                    f"<div class=sub>{_e(issue.detail)}</div>"))
    return "\n".join(parts) + "</div>"
