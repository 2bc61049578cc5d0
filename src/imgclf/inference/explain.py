"""Why an answer: where in the picture the evidence for a class lies, and which training
pictures look most like it.

The heatmap is Grad-CAM (Selvaraju et al. 2017) at the backbone's last feature map: each
feature channel weighted by the mean gradient of the class's score, negative evidence cut
off, scaled to the picture. The features are computed without gradients and only the head
is differentiated, so it costs one forward pass and a head's backward (tens of
milliseconds) beside the prediction, and no weight of the network gets a gradient. With the usual head (average
pooling and a linear layer) it equals the class-activation map of Zhou et al. 2016.

The nearest pictures come from the "unknown" detector's bank (unknown.py): the training
pictures' embeddings are already in the model file, and ModelInfo.bank_pictures names their
files. PyTorch runs both (the serving path does not need them); torch is imported here only
when an explanation is computed.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgclf._files import atomic_path
from imgclf.config import MAX_LABEL_BITS
from imgclf.data.decoding import load_image
from imgclf.errors import ImageError
from imgclf.plots import plot_explanation

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch import nn

# Training pictures an explanation lists by default.
NEIGHBOURS = 4
# The side, in pixels, a neighbour's thumbnail is decoded at (drawn smaller).
THUMBNAIL = 160


@dataclass(frozen=True)
class Neighbour:
    """One training picture near the explained one."""

    label: str
    similarity: float  # cosine similarity of the two embeddings (1: the same)
    path: str | None  # as named when the model trained; None where the file did not say

    @property
    def at_hand(self) -> bool:
        """Whether the picture is still where it was when the model trained."""
        return self.path is not None and os.path.isfile(self.path)

    def picture(self, side: int = THUMBNAIL):
        """The training picture, its longer side at most `side` pixels (PIL); None when it
        is not at hand or cannot be read now."""
        if not self.at_hand:
            return None
        try:
            return load_image(self.path, max_side=side)
        except ImageError:
            return None


@dataclass
class Explanation:
    """A prediction with its reasons: a heatmap over the picture the network saw, and the
    training pictures nearest to it.

    Example:
        >>> explanation = model.explain("bee.jpg")
        >>> explanation.prediction.label, explanation.nearest[0].label
        ('bees', 'bees')
        >>> explanation.save("bee-why.png")
    """

    prediction: Any  # the Prediction explained
    picture: np.ndarray  # H x W x 3 uint8: the square view the network saw
    heatmap: np.ndarray  # H x W, 0..1: where the evidence for `explained` lies
    explained: str  # the class the heatmap is for (the closest one, also for "unknown")
    nearest: list[Neighbour] = field(default_factory=list)
    name: str = ""  # the picture's file name, when it came from a file

    def __repr__(self) -> str:
        nearest = ", ".join(f"{n.label} {n.similarity:.2f}" for n in self.nearest)
        return (f"Explanation({self.prediction!r}, explained={self.explained!r}, "
                f"heatmap {self.heatmap.shape[1]}x{self.heatmap.shape[0]}, "
                f"nearest=[{nearest}])")

    def heat_share(self, mask: np.ndarray) -> float:
        """The share of the heat inside a boolean mask of the picture's size."""
        total = float(self.heatmap.sum())
        return float(self.heatmap[mask].sum()) / total if total > 0 else 0.0

    def plot(self, *, neighbours: int = NEIGHBOURS) -> Figure:
        """The picture, its heatmap, and the nearest training pictures with their labels."""
        shown = self.nearest[:neighbours]
        title = self.prediction.describe(2)
        return plot_explanation(
            self.picture, self.heatmap,
            title=f"{self.name}\n{title}" if self.name else title,
            heat_title=f"evidence for {self.explained}",
            neighbours=[(neighbour.picture(),
                         f"{neighbour.label}, similarity {neighbour.similarity:.2f}"
                         + ("" if neighbour.at_hand else "\n(file not at hand)"))
                        for neighbour in shown])

    def save(self, path: str | os.PathLike) -> Path:
        """Write plot() as a PNG file."""
        path = Path(path)
        with atomic_path(path) as temporary:
            self.plot().savefig(temporary, format="png", dpi=80)
        return path

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.plot().savefig(buffer, format="png", dpi=72)
        return buffer.getvalue()


def explain_array(network: nn.Module, array: np.ndarray, square: np.ndarray, *, index: int,
                  classes: list[str], bank_pictures: tuple[str, ...] = (),
                  neighbours: int = NEIGHBOURS) -> tuple[np.ndarray, list[Neighbour]]:
    """(heatmap, nearest training pictures) of one normalised picture (3 x H x W, the
    evaluation pipeline's array) for class `index`; `square` is the picture it came from."""
    import torch

    parameter = next(network.parameters())
    images = torch.from_numpy(np.ascontiguousarray(array))[None].to(parameter.device)
    with torch.no_grad():
        features = network.features(images.to(parameter.dtype))
    features = features.detach().requires_grad_(True)
    with torch.enable_grad():
        score = network.head(features)[0, index]
        gradient, = torch.autograd.grad(score, features)
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    heat = torch.relu((weights * features).sum(dim=1, keepdim=True)).detach().float()
    heat = torch.nn.functional.interpolate(heat, size=square.shape[:2], mode="bilinear",
                                           align_corners=False)[0, 0].cpu().numpy()
    peak = float(heat.max())
    heat = heat / peak if peak > 0 else np.zeros_like(heat)
    pooled = features.detach().mean(dim=(2, 3))
    return heat.astype(np.float32), _nearest(network, pooled, classes, bank_pictures,
                                              neighbours)


def _nearest(network: nn.Module, pooled, classes: list[str], bank_pictures: tuple[str, ...],
             count: int) -> list[Neighbour]:
    """The bank's pictures most like the embedding, most alike first (cosine similarity, as
    the detector measures it); none when the network has no detector."""
    import torch

    detector = getattr(network, "detector", None)
    if detector is None or count <= 0:
        return []
    bank = detector.bank.float()
    query = torch.nn.functional.normalize(pooled.float().to(bank.device), dim=1)
    similarity = (query @ bank.T)[0]
    top = similarity.topk(min(count, len(bank)))
    named = len(bank_pictures) == len(bank)  # a file of another bank names none
    return [Neighbour(label=_labels(detector, int(detector.labels[row]), classes),
                      similarity=float(value), path=bank_pictures[row] if named else None)
            for value, row in zip(top.values.tolist(), top.indices.tolist())]


def _labels(detector: nn.Module, entry: int, classes: list[str]) -> str:
    """A bank picture's class; a multi-label model's labels (the bits of its entry), joined
    by ";" ("-" for none; "?" past MAX_LABEL_BITS labels, whose sets the bank cannot hold)."""
    if getattr(detector, "by_class", True):
        return classes[entry]
    if len(classes) > MAX_LABEL_BITS:
        return "?"
    return ";".join(name for bit, name in enumerate(classes) if entry >> bit & 1) or "-"

