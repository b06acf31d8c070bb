"""Networks split into a feature extractor f(x) (the penultimate layer) and a linear head.

Feature collision (Eq. 1) lives in the penultimate-layer space, the transfer victim retrains only
the head, and the angular deviation compares head weights, so every model exposes exactly that
split. Models take pixels in [0, 1] and normalise inside, so attacks work in pixel space.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from frogs.registry import Registry
from frogs.settings import ModelSettings

log = logging.getLogger(__name__)

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


@dataclass(frozen=True)
class ModelSpec:
    """What the dataset tells a model builder about its inputs and outputs."""

    in_channels: int
    image_size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


class InputAdapter(nn.Module):
    """Normalise [0, 1] pixels; repeat grey to RGB and resize when the backbone needs it."""

    def __init__(
        self, mean: tuple[float, ...], std: tuple[float, ...], channels: int, size: int | None
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))
        self.channels = channels
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        if x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1)
        if self.size is not None and x.shape[-1] != self.size:
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear")
        return x


class FeatureClassifier(nn.Module):
    """``head(features(x))``; ``features`` is the penultimate layer the paper calls f(x)."""

    def __init__(
        self, adapter: InputAdapter, backbone: nn.Module, feature_dim: int, num_classes: int
    ):
        super().__init__()
        self.adapter = adapter
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.backbone(self.adapter(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _feature_dim(backbone: nn.Module, adapter: InputAdapter, spec: ModelSpec) -> int:
    probe = torch.zeros(1, spec.in_channels, spec.image_size, spec.image_size)
    with torch.no_grad():
        return int(torch.flatten(backbone.eval()(adapter(probe)), 1).shape[1])


@MODELS.register("alexnet_cifar")
def alexnet_cifar(spec: ModelSpec, settings: ModelSettings) -> FeatureClassifier:
    """The paper's scaled-down AlexNet for CIFAR-10 (Table 1), for 1 or 3 input channels.

    conv5x5-64, maxpool 3x3/2, LRN, conv5x5-64, LRN, maxpool 3x3/2, fc384, fc192 (= f(x)), fc-out.
    """
    backbone = nn.Sequential(
        nn.Conv2d(spec.in_channels, 64, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, padding=1),
        nn.LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0),
        nn.Conv2d(64, 64, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0),
        nn.MaxPool2d(3, 2, padding=1),
        nn.Flatten(),
    )
    adapter = InputAdapter(spec.mean, spec.std, spec.in_channels, settings.input_size)
    flat = _feature_dim(backbone, adapter, spec)
    backbone.extend([nn.Linear(flat, 384), nn.ReLU(inplace=True), nn.Linear(384, 192), nn.ReLU()])
    return FeatureClassifier(adapter, backbone, 192, spec.num_classes)


def _torchvision_weights(arch: str, name: str | None):
    """The torchvision weights enum member ``name`` of ``arch``, or None when not configured."""
    if not name:
        return None
    from torchvision.models import get_model_weights

    enum = get_model_weights(arch)
    try:
        return enum[name] if name != "DEFAULT" else enum.DEFAULT
    except KeyError:
        from frogs.errors import ConfigError

        raise ConfigError(
            f"model.weights={name!r} is not a weight set of {arch}; expected one of "
            f"{', '.join(['DEFAULT', *enum.__members__])}"
        ) from None


def _load_torchvision(arch: str, settings: ModelSettings, **kwargs) -> tuple[nn.Module, bool]:
    """Build a torchvision model with its configured weights; fall back to random init offline."""
    from torchvision import models

    builder = getattr(models, arch)
    weights = _torchvision_weights(arch, settings.weights)
    if weights is not None:
        try:
            return builder(weights=weights, **kwargs), True
        except Exception as exc:  # no network, no cached file
            log.warning(
                "could not load %s weights %s (%s: %s); frogs will pretrain %s itself",
                arch,
                settings.weights,
                type(exc).__name__,
                exc,
                arch,
            )
    return builder(weights=None, **kwargs), False


@MODELS.register("resnet18")
def resnet18(spec: ModelSpec, settings: ModelSettings) -> FeatureClassifier:
    """torchvision ResNet-18; ``small_input`` swaps the ImageNet stem for a CIFAR-style 3x3 conv."""
    net, pretrained = _load_torchvision("resnet18", settings)
    if settings.small_input and not pretrained:
        net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    adapter = InputAdapter(spec.mean, spec.std, 3, settings.input_size)
    return FeatureClassifier(adapter, net, 512, spec.num_classes)


@MODELS.register("inception_v3")
def inception_v3(spec: ModelSpec, settings: ModelSettings) -> FeatureClassifier:
    """torchvision Inception-v3 (the paper's transfer-learning network); f(x) is the 2048-d pool."""
    net, _ = _load_torchvision(
        "inception_v3", settings, aux_logits=bool(settings.weights), init_weights=False
    )
    net.aux_logits, net.AuxLogits = False, None
    net.fc = nn.Identity()
    adapter = InputAdapter(spec.mean, spec.std, 3, settings.input_size or 299)
    return FeatureClassifier(adapter, net, 2048, spec.num_classes)


def prepare_for_device(model: nn.Module, device: torch.device, amp: bool = False) -> nn.Module:
    """``model`` on ``device``; with ``amp`` on CUDA also channels-last, the layout in which bf16
    convolutions run fastest (the CPU path is left exactly as it is)."""
    model = model.to(device)
    if amp and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def build_model(spec: ModelSpec, settings: ModelSettings) -> FeatureClassifier:
    """Build the configured model through its registered builder."""
    return MODELS.get(settings.name)(spec, settings)
