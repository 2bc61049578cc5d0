"""The Gradio page: upload, paste or webcam picture -> top classes with probability bars."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from imgclf.config import InferenceConfig
from imgclf.data.decoding import load_image
from imgclf.data.sources import find_images
from imgclf.errors import ImageError, ImgclfError
from imgclf.inference.predictor import Predictor
from imgclf.plots import overlay
from imgclf.serve import SERVE_HINT

# Gradio's delete_cache: every 10 minutes, uploads older than an hour are deleted (and all of
# them when the server stops), so pictures people send do not pile up in the temp folder.
DELETE_UPLOADS = (600, 3600)


def _gradio():
    try:
        import gradio
    except ImportError:
        raise ImgclfError(SERVE_HINT) from None
    return gradio


def describe(predictor) -> str:
    """Markdown describing the model: classes, backbone and validation figures."""
    metrics = predictor.info.metrics
    kind = ("**Labels**, any number per picture" if predictor.multi_label else "**Classes**")
    lines = [f"{kind} ({len(predictor.classes)}): {', '.join(predictor.classes)}",
             f"**Backbone**: {predictor.info.backbone}, input "
             f"{predictor.input.image_size} px"]
    if "accuracy" in metrics:
        # multi-label: fastai's accuracy_multi, (picture, label) pairs right at 0.5
        name = "labels right at 0.5" if predictor.multi_label else "accuracy"
        lines.append(f"**Validation**: {name} {metrics['accuracy']:.1%}, loss "
                     f"{metrics.get('valid_loss', float('nan')):.3f}")
    if predictor.has_detector:
        lines.append(f"**Unknown pictures**: a picture that looks like none of the classes is "
                     f"called unknown ({predictor.acceptance:.0%} of the pictures it "
                     f"was calibrated on pass)")
    return "  \n".join(lines)


def page_title(classes: list[str], multi_label: bool = False) -> str:
    """"Ants or bees?", "Cat, dog or fox?"; past three classes: "A classifier of 10 classes";
    several labels per picture: "Bus, car, person: which are in the picture?"."""
    names = [name.replace("_", " ") for name in classes]
    if multi_label:
        return (", ".join(names[:8]) + (", ..." if len(names) > 8 else "")).capitalize() + (
            ": which are in the picture?")
    if len(names) <= 3:
        return (", ".join(names[:-1]) + " or " + names[-1]).capitalize() + "?"
    return f"A classifier of {len(names)} classes"


def unknown_text(classes: list[str], prediction) -> str:
    """What the page shows for a picture of none of the classes."""
    shown = ", ".join(classes[:8]) + (", ..." if len(classes) > 8 else "")
    return (f"Unknown: none of {shown} (closest: {prediction.closest} "
            f"{prediction.probability:.0%})")


def _reading(picture: dict | str | os.PathLike | None, read: Any) -> Any:
    """read(the picture's path) for the page's buttons; None for no picture.

    picture: Gradio's file data for an upload (a dict with the file's path in Gradio's upload
    folder), or a path. An upload that is no picture is deleted at once.

    Raises:
        gradio.Error: imgclf's reason alone (the source is a temporary file's name; a user's
            bad file is no server fault, so no traceback in the server's console either).
    """
    gr = _gradio()
    upload = picture.get("path") if isinstance(picture, dict) else None
    if upload is not None:
        picture = upload
    if not picture:
        return None
    try:
        return read(picture)
    except ImageError as error:
        if upload is not None:
            Path(upload).unlink(missing_ok=True)
        raise gr.Error(f"Cannot read this picture: {error.reason}",
                       print_exception=False) from None


def classify(predictor, picture: dict | str | os.PathLike | None) -> Any:
    """The page's answer for one picture: class probabilities, or the "unknown" text (a
    multi-label model's: its probabilities under a title naming the labels given, as a
    Gradio update).

    picture: Gradio's file data for an upload (a dict with the file's path in Gradio's
    upload folder), or a path. imgclf's own reader reads it, so a file that is no picture
    gets imgclf's reason, not a decoder's message naming a temporary file. An upload that
    is no picture is deleted at once: the server keeps no file it cannot use.

    Raises:
        gradio.Error: the picture cannot be read; the message says why.
    """
    picture = _reading(picture, predictor.predict)
    if picture is None:  # cleared: no bars, and a multi-label page's title back to its own
        return _gradio().update(value=None, label="Prediction") if predictor.multi_label else {}
    prediction = picture
    if prediction.unknown:  # no confident bar for a class it is not
        text = unknown_text(predictor.classes, prediction)
        # a multi-label page's title named the last picture's labels: back to its own
        return _gradio().update(value=text, label="Prediction") if predictor.multi_label else text
    probabilities = prediction.to_dict()["probabilities"]  # the API's answer, drawn as bars
    if prediction.labels is not None:  # multi-label: the labels given head the bars
        given = ", ".join(prediction.labels) or "none reaches its threshold"
        return _gradio().update(value=probabilities, label=f"Labels: {given}")
    return probabilities


def explain_picture(predictor, picture: dict | str | os.PathLike | None, *,
                    training_pictures: bool = False) -> tuple[Any, str, list]:
    """The page's "Why this answer?" panel for one picture: the picture the network saw with
    the evidence for its answer as heat, markdown naming the nearest training pictures'
    classes, and, with training_pictures, those pictures with their captions (a page others
    can open must not show the training data: see build_blocks).

    Raises:
        gradio.Error: the picture cannot be read, or the model cannot be explained.
    """
    gr = _gradio()
    try:
        explanation = _reading(picture, predictor.explain)
    except ImgclfError as error:  # an .onnx model, or its file changed: no network to explain
        print(f"imgclf: cannot explain: {error}", file=sys.stderr)  # the server's log
        # the page names no file of the server's
        raise gr.Error("This model cannot explain its answers here (see the server's log).",
                       print_exception=False) from None
    if explanation is None:
        return None, "", []
    lines = [f"The heat marks where the evidence for **{explanation.explained}** lies."]
    if explanation.nearest:
        lines.append("Most alike among the training pictures: " + ", ".join(
            f"{n.label} ({n.similarity:.2f})" for n in explanation.nearest) + ".")
    shown = [(neighbour.picture(), f"{neighbour.label} ({neighbour.similarity:.2f})")
             for neighbour in explanation.nearest] if training_pictures else []
    return (overlay(explanation.picture, explanation.heatmap), "  \n".join(lines),
            [(small, caption) for small, caption in shown if small is not None])


def build_blocks(predictor, *, examples: str | os.PathLike | list | None = None,
                 title: str | None = None, training_pictures: bool = False):
    """Gradio Blocks over a Predictor. examples: a folder of pictures or a list of paths.
    training_pictures: the "Why this answer?" panel shows the training pictures most like
    the picture (where the model file names them and they are at hand); for a page that is
    this computer's alone (``imgclf serve`` on 127.0.0.1, a notebook), never for one others
    can open.

    Uploads are deleted an hour after they arrive and when the server stops; mount it with
    ``max_file_size`` (``imgclf.serve.http.create_app`` does) to cap their size.
    """
    gr = _gradio()
    title = title or page_title(predictor.classes, predictor.multi_label)

    def run(picture):
        return classify(predictor, picture)

    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=DELETE_UPLOADS) as demo:
        gr.Markdown(f"# {title}\n{describe(predictor)}")
        with gr.Row():
            # type="filepath" and preprocess=False below: Gradio hands over the uploaded
            # file unread, and imgclf's reader (not Gradio's PIL call) says what is wrong
            image = gr.Image(type="filepath", sources=["upload", "clipboard", "webcam"],
                             label="Picture")
            label = gr.Label(num_top_classes=min(5, len(predictor.classes)), label="Prediction",
                             elem_id="prediction")
        button = gr.Button("Classify", variant="primary")
        image.change(run, inputs=image, outputs=label, preprocess=False,
                     api_visibility="undocumented")
        button.click(run, inputs=image, outputs=label, preprocess=False, api_name="classify")
        with gr.Accordion("Why this answer?", open=False):
            why = gr.Button("Explain")
            with gr.Row():
                heat = gr.Image(label="Evidence", interactive=False, elem_id="evidence")
                reasons = gr.Markdown(elem_id="reasons")
            alike = gr.Gallery(label="Most alike training pictures", columns=4, height=220,
                               visible=training_pictures, elem_id="alike")
            why.click(lambda picture: explain_picture(predictor, picture,
                                                      training_pictures=training_pictures),
                      inputs=image, outputs=[heat, reasons, alike], preprocess=False,
                      api_name="explain")
        paths = example_paths(examples)
        if paths:
            gr.Examples(paths, inputs=image)
    # one prediction at a time: requests wait in Gradio's queue instead of fighting for 2 cores
    demo.queue(default_concurrency_limit=1)
    return demo


def build_app(model: str | os.PathLike, *, examples: Any = None,
              runtime: str = InferenceConfig.runtime, training_pictures: bool = False):
    """The Gradio app for a model file (what a Hugging Face Space's app.py calls).

    Example:
        >>> build_app("cats.imgclf", training_pictures=True).launch()  # in a notebook
    """
    return build_blocks(Predictor.load(model, runtime=runtime), examples=examples,
                        training_pictures=training_pictures)


def example_paths(examples: str | os.PathLike | list | None, *, limit: int = 12
                  ) -> list[str]:
    """The example pictures the page may publish: real pictures inside their folder.

    A file that imgclf cannot read, or a link that leads out of the folder (a stray
    ``passwd.jpg -> /etc/passwd``), is skipped with a warning on stderr: whatever is listed
    here is served to anyone who opens the page.
    """
    if not examples:
        return []
    if isinstance(examples, (str, os.PathLike)):
        folder = Path(examples)
        if not folder.is_dir():
            return []
        candidates = [(path, folder) for path in find_images(folder)]
    else:
        candidates = [(Path(path), Path(path).parent) for path in examples]
    kept = []
    for path, folder in candidates:
        if len(kept) == limit:
            break
        reason = _unfit_example(path, folder)
        if reason:
            print(f"Skipping example {path}: {reason}", file=sys.stderr)
        elif str(path.resolve()) not in kept:  # a link to another example: shown once
            kept.append(str(path.resolve()))
    return kept


def _unfit_example(path: Path, folder: Path) -> str | None:
    """Why a file must not be published as an example, or None."""
    try:
        load_image(path)  # first: a link loop has no resolved path
    except ImageError as error:
        return error.reason
    resolved = path.resolve()
    if not resolved.is_relative_to(folder.resolve()):
        return f"it leads out of {folder} (to {resolved})"
    return None
