"""The Gradio page: upload, paste or webcam picture -> top classes with probability bars."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from imgclf.errors import ImageError, ImgclfError
from imgclf.serve import SERVE_HINT


def _gradio():
    try:
        import gradio
    except ImportError:
        raise ImgclfError(SERVE_HINT) from None
    return gradio


def describe(predictor) -> str:
    """Markdown describing the model: classes, backbone and validation figures."""
    metrics = predictor.info.metrics
    lines = [f"**Classes** ({len(predictor.classes)}): {', '.join(predictor.classes)}",
             f"**Backbone**: {predictor.info.backbone}, input "
             f"{predictor.input.image_size} px"]
    if "accuracy" in metrics:
        lines.append(f"**Validation**: accuracy {metrics['accuracy']:.1%}, loss "
                     f"{metrics.get('valid_loss', float('nan')):.3f}")
    if predictor.has_detector:
        lines.append(f"**Unknown pictures**: a picture that looks like none of the classes is "
                     f"called unknown ({predictor.acceptance:.0%} of validation "
                     f"pictures pass)")
    return "  \n".join(lines)


def unknown_text(classes: list[str], prediction) -> str:
    """What the page shows for a picture of none of the classes."""
    shown = ", ".join(classes[:8]) + (", ..." if len(classes) > 8 else "")
    return (f"Unknown: none of {shown} (closest: {prediction.closest} "
            f"{prediction.probability:.0%})")


def build_blocks(predictor, *, examples: str | os.PathLike | list | None = None, title: str | None = None):
    """Gradio Blocks over a Predictor. examples: a folder of pictures or a list of paths."""
    gr = _gradio()
    title = title or f"{' / '.join(predictor.classes[:4])} classifier"

    def classify(picture) -> dict[str, float] | str:
        if picture is None:
            return {}
        try:
            prediction = predictor.predict(picture)
        except ImageError as error:
            raise gr.Error(f"Cannot read this picture: {error.reason}") from None
        if prediction.unknown:  # no confident bar for a class it is not
            return unknown_text(predictor.classes, prediction)
        return prediction.probabilities

    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(f"# {title}\n{describe(predictor)}")
        with gr.Row():
            image = gr.Image(type="pil", sources=["upload", "clipboard", "webcam"],
                             label="Picture")
            label = gr.Label(num_top_classes=min(5, len(predictor.classes)), label="Prediction",
                             elem_id="prediction")
        button = gr.Button("Classify", variant="primary")
        image.change(classify, inputs=image, outputs=label)
        button.click(classify, inputs=image, outputs=label)
        paths = _example_paths(examples)
        if paths:
            gr.Examples(paths, inputs=image)
    # one prediction at a time: requests wait in Gradio's queue instead of fighting for 2 cores
    demo.queue(default_concurrency_limit=1)
    return demo


def build_app(model: str | os.PathLike, *, examples: Any = None, runtime: str = "torch"):
    """The Gradio app for a model file (what a Hugging Face Space's app.py calls)."""
    from imgclf.predict import Predictor

    return build_blocks(Predictor.load(model, runtime=runtime), examples=examples)


def _example_paths(examples) -> list[str]:
    from imgclf.sources import find_images

    if not examples:
        return []
    if isinstance(examples, (str, os.PathLike)):
        folder = Path(examples)
        return [str(p) for p in find_images(folder)[:12]] if folder.is_dir() else []
    return [str(p) for p in examples]
