"""The classifier network: a pretrained backbone plus a new head, with freezing and layer groups."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from imgclf.backbones import create_backbone
from imgclf.config import HeadConfig
from imgclf.errors import BackboneError, ModelFileError
from imgclf.unknown import Detector

if TYPE_CHECKING:
    from imgclf.modelfile import ModelInfo

__all__ = ["Classifier", "Head", "HeadConfig", "MODEL_PREFIX", "network_from_tensors"]


class Head(nn.Module):
    """Pooling, dropout and a linear layer (optionally a hidden layer first)."""

    def __init__(self, num_features: int, num_classes: int, config: HeadConfig = HeadConfig()):
        super().__init__()
        self.config = config
        width = num_features * (2 if config.pool == "concat" else 1)
        layers: list[nn.Module] = [nn.Flatten()]
        if config.hidden:
            layers += [nn.Dropout(config.dropout / 2), nn.Linear(width, config.hidden),
                       nn.BatchNorm1d(config.hidden), nn.ReLU(inplace=True)]
            width = config.hidden
        layers += [nn.Dropout(config.dropout), nn.Linear(width, num_classes)]
        self.layers = nn.Sequential(*layers)

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim == 2:  # already pooled
            return features
        average = features.mean(dim=(2, 3))
        if self.config.pool == "concat":
            return torch.cat([average, features.amax(dim=(2, 3))], dim=1)
        return average

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(self.pool(features))

    @property
    def linear(self) -> nn.Linear:
        return self.layers[-1]


class Classifier(nn.Module):
    """Backbone features -> Head -> class scores (logits).

    Example:
        >>> network = Classifier.create("efficientnet_lite0", num_classes=2)
        >>> network(torch.zeros(1, 3, 224, 224)).shape
        torch.Size([1, 2])
    """

    def __init__(self, backbone: nn.Module, head: Head, *, multi_label: bool = False):
        super().__init__()
        self.backbone = backbone
        self.head = head
        # several labels per picture: each class score is its own label's logit (sigmoid),
        # not one of a softmax's (the forward loop reads this)
        self.multi_label = multi_label
        # the "unknown" detector, fitted when training ends (unknown.py); None before
        self.detector: Detector | None = None

    @classmethod
    def create(cls, backbone: str, num_classes: int, *, head: HeadConfig = HeadConfig(),
               pretrained: bool = True, weights: str | None = None, multi_label: bool = False
               ) -> Classifier:
        network = create_backbone(backbone, pretrained=pretrained, weights=weights)
        return cls(network, Head(network.num_features, num_classes, head),
                   multi_label=multi_label)

    def features(self, images: torch.Tensor, *, start: int = 0, stop: int | None = None
                 ) -> torch.Tensor:
        """Unpooled backbone features (N, C, H, W).

        start, stop: run only stages()[start:stop]; images are then what stage `start` takes
        (the output of the stages before it), and the result what stage `stop` would take.
        """
        if not start and stop is None:
            return self.backbone.forward_features(images)
        stages = self.stages()
        if stages is None:
            raise ValueError(f"{type(self.backbone).__name__} cannot be run in stages")
        for stage in stages[start:stop]:
            images = stage(images)
        return images

    def stages(self) -> list[nn.Module] | None:
        """The backbone's forward_features as modules run in turn, for timm's EfficientNet
        family (stem, its batch norm, each block, head convolution and batch norm); None for
        a backbone of another kind."""
        backbone = self.backbone
        names = ("conv_stem", "bn1", "blocks", "conv_head", "bn2")
        if not all(hasattr(backbone, name) for name in names) or getattr(
                backbone, "grad_checkpointing", False):
            return None
        blocks = [block for stage in backbone.blocks for block in stage]
        return [backbone.conv_stem, backbone.bn1, *blocks, backbone.conv_head, backbone.bn2]

    def frozen_start(self) -> int:
        """How many of the first stages() have every weight frozen (freeze_early's early
        layers): what they compute from a picture does not change while training, so it can
        be computed once (training/frozen.py). 0 when none is, or the backbone has no stages;
        every stage when the whole backbone is frozen."""
        count = 0
        for stage in self.stages() or ():
            parameters = list(stage.parameters())
            if any(parameter.requires_grad for parameter in parameters):
                break
            count += 1
        return count

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))

    def infer(self, images: torch.Tensor, *, embeddings: bool = False, start: int = 0
              ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """One pass for the forward loop: (class scores, pooled embeddings, outlier scores).

        The embeddings (average-pooled backbone features, N x num_features) feed the probe's
        head fit and the detector; they are returned when asked for. Outlier scores (higher =
        stranger) come from the detector, None without one. start: images are the output of
        the first `start` stages (features).
        """
        features = self.features(images, start=start)
        pooled = features.mean(dim=(2, 3))
        logits = self.head(features)
        outlier = self.detector(logits, pooled) if self.detector is not None else None
        return logits, pooled if embeddings else None, outlier

    # --- freezing ---

    def freeze(self) -> None:
        """Train only the head: the backbone's weights stay as they are."""
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(False)

    def unfreeze(self, *, early: bool = True) -> None:
        """Train the whole network; early=False keeps the backbone's early layers (the first
        of layer_groups(), the part discriminative rates barely move) frozen: no gradient then
        flows through the network's largest feature maps, which halves a CPU training step."""
        for parameter in self.parameters():
            parameter.requires_grad_(True)
        if not early:
            for parameter in self.layer_groups()[0]:
                parameter.requires_grad_(False)

    @property
    def frozen(self) -> bool:
        return not any(p.requires_grad for p in self.backbone.parameters())

    def train(self, mode: bool = True) -> Classifier:
        """Training mode, except the backbone's batch-norm layers, which keep their ImageNet
        statistics: with batches of 5-32 photos, re-estimating them per batch is mostly noise
        and is what wrecks small-batch fine-tuning. Their scale and shift still learn."""
        super().train(mode)
        if mode:
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
            if self.frozen:
                self.backbone.eval()
        return self

    def layer_groups(self, count: int = 3) -> list[list[nn.Parameter]]:
        """Parameters from early to late: the backbone split in count-1 parts, then the head.

        Used for discriminative learning rates: early layers (edges, textures) change least.
        """
        backbone = list(self.backbone.parameters())
        parts = max(1, count - 1)
        size = -(-len(backbone) // parts)
        groups = [backbone[i:i + size] for i in range(0, len(backbone), size)]
        return [*groups, list(self.head.parameters())]


# --- model files ----------------------------------------------------------------------------

MODEL_PREFIX = "model."


def network_from_tensors(tensors: dict[str, torch.Tensor], info: ModelInfo,
                         source: str) -> Classifier:
    """Rebuild a Classifier from a model file's tensors; no download, no pretrained weights."""
    classes = info.classes
    try:
        network = Classifier.create(info.backbone, len(classes), head=info.head,
                                    pretrained=False, multi_label=info.multi_label)
    except (TypeError, ValueError, BackboneError) as error:
        raise ModelFileError(f"{source}: its metadata does not describe a network "
                             f"({type(error).__name__}: {error})") from None
    state = {name[len(MODEL_PREFIX):]: tensor for name, tensor in tensors.items()
             if name.startswith(MODEL_PREFIX)}
    if info.unknown is not None and "detector.bank" in state:
        network.detector = Detector.empty(*state["detector.bank"].shape,
                                          len(state.get("detector.calibration", ())),
                                          info.unknown)
    expected = network.state_dict()
    problems = [name for name in expected if name not in state
                or state[name].shape != expected[name].shape]
    problems += [name for name in state if name not in expected]
    if problems:
        raise ModelFileError(
            f"{source}: its weights do not fit the network it describes ({info.backbone}, "
            f"{len(classes)} classes): {len(problems)} mismatched tensors, e.g. {problems[0]}")
    network.load_state_dict(state, strict=True)
    return network.eval()
