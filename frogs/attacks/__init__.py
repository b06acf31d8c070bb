"""Attacks (``attack=`` group): one module per attack, all under one contract.

An attack is a function ``craft(settings, problem) -> Crafted`` registered with its settings
dataclass: ``@ATTACKS.register("name", NameSettings)``. ``problem`` holds what every attack is
given (target, bases, labels, one or more feature extractors, the perceptibility budget, the
device); ``Crafted`` holds the poisons, the crafting starts their perceptibility is measured
against, and a dict of metrics that go into the trial record as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from frogs.attacks.budget import Budget
from frogs.config.registry import Registry
from frogs.config.settings import AttackSettings, resolved_eps

FeatureFn = Callable[[torch.Tensor], torch.Tensor]

ATTACKS: Registry = Registry("attack")


@dataclass(frozen=True)
class CraftingProblem:
    """What every attack is given.

    ``extractors`` are the feature maps the attack crafts against (the attack's ``ensemble``;
    the clean model's f(x) for single-model attacks); ``victim_features`` is the clean model's
    f(x), the space in which frogs measures every attack's feature distances. Images are in
    [0, 1] pixels; ``budget`` is a ball in [0, 1] pixel units around each crafting start.
    """

    target: torch.Tensor
    bases: torch.Tensor
    target_label: int
    base_label: int
    extractors: list[FeatureFn]
    victim_features: FeatureFn
    budget: Budget
    device: torch.device
    progress: bool = False
    amp: bool = False
    #: the trial's index (an attack that reads its poisons from files finds them by it)
    trial_index: int = 0


@dataclass(frozen=True)
class Crafted:
    """What every attack returns: poisons (N,C,H,W) in [0, 1], the crafting starts (the bases,
    or what the attack made of them before optimising, e.g. watermarked), and record metrics.

    ``per_poison`` holds metrics with one value per poison (N,): the record gets their mean (and,
    for the final feature distance, min and max) over the poisons the trial uses, so a trial that
    uses the first N poisons of a larger crafted set records what crafting N would.
    """

    poisons: torch.Tensor
    starts: torch.Tensor
    metrics: dict[str, Any] = field(default_factory=dict)
    per_poison: dict[str, torch.Tensor] = field(default_factory=dict)

    def first(self, count: int) -> Crafted:
        """The first ``count`` poisons, their starts and per-poison metrics."""
        return Crafted(
            self.poisons[:count],
            self.starts[:count],
            dict(self.metrics),
            {name: values[:count] for name, values in self.per_poison.items()},
        )

    def record_metrics(self) -> dict[str, Any]:
        """``metrics`` plus the per-poison metrics summarised over these poisons."""
        summary: dict[str, Any] = dict(self.metrics)
        for name, values in self.per_poison.items():
            values = values.double()
            summary[name] = float(values.mean())
            if name == "feat_dist_after":
                summary[f"{name}_min"] = float(values.min())
                summary[f"{name}_max"] = float(values.max())
        return summary


def attack_budget(settings: AttackSettings) -> Budget:
    """The perceptibility budget the ``attack`` group sets (radius in [0, 1] pixel units)."""
    return Budget(settings.constraint, resolved_eps(settings))


def feature_distances(
    feature_fn: FeatureFn, target: torch.Tensor, poisons: torch.Tensor
) -> torch.Tensor:
    """‖f(p) − f(t)‖ of every poison, in the clean feature space (one value per poison)."""
    with torch.no_grad():
        target_features = feature_fn(target.unsqueeze(0)).flatten(1)
        return (feature_fn(poisons).flatten(1) - target_features).norm(dim=1)
