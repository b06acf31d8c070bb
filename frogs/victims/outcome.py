"""The values retraining gives: a classifier as its two parts, the poisoned victim, the control,
and the decision-boundary angle between two heads (Fig. 2)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from frogs.data.task import Task


class Classifier(nn.Module):
    """A victim's classifier, ``head(features(x))``, kept as its two parts so that an evaluator
    that already holds the features of its accuracy set (the transfer victim's frozen extractor)
    scores the head alone."""

    def __init__(self, features: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Features(nn.Module):
    """``model.features`` as a module (the feature map of a ``FeatureClassifier``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)


@dataclass
class PoisonedVictim:
    """A retrained victim: how it classifies, its head, and the angle after each epoch."""

    predict: nn.Module
    head_weight: torch.Tensor
    head_bias: torch.Tensor
    angle_per_epoch: list[float]
    features: nn.Module | None = None


@dataclass(frozen=True)
class Control:
    """The clean-retrained control: the same training run as a poisoned one, without poisons.

    ``head_per_epoch`` is its final layer after every epoch (the reference of the per-epoch
    angle); ``drift_deg`` is its boundary's angle to the clean model's before retraining (0 for
    the transfer victim, whose control *is* the clean head).
    """

    predict: nn.Module
    head_per_epoch: list[torch.Tensor]
    drift_deg: float


def boundary_angle_deg(clean: torch.Tensor, poisoned: torch.Tensor, task: Task) -> float:
    """Angle between the clean and poisoned decision-boundary normals, in degrees (Fig. 2).

    The normal of the target/base boundary is the difference of the two head rows.
    """
    a = (clean[task.base_row] - clean[task.target_row]).double()
    b = (poisoned[task.base_row] - poisoned[task.target_row]).double()
    cosine = torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-12)
    return math.degrees(math.acos(float(cosine.clamp(-1.0, 1.0))))
