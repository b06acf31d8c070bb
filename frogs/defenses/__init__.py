"""Defenses (``defense=`` group): filters of the poisoned training set, between crafting and
retraining. One module per defense, all under one contract.

A defense is a function ``defend(settings, features, training) -> keep`` registered with its
settings dataclass: ``@DEFENSES.register("name", NameSettings)``. ``training`` is the poisoned
training set as a value (inputs, labels, which rows are poisons); ``features`` are the clean
model's penultimate features of those rows (as the defenses' papers filter); ``keep`` is a
boolean mask over the rows (a defense whose settings say ``needs_features = False`` gets None
instead of features, which are then not computed). The defense never looks at ``is_poison``:
frogs uses it only to score the defense (recall, clean points removed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from frogs.config.registry import Registry
from frogs.data.poisoned_set import PoisonedSet

__all__ = [
    "DEFENSES",
    "DefenseFn",
    "Filtered",
    "PoisonedSet",
    "by_class",
    "filter_per_class",
    "score",
]

DefenseFn = Callable[..., torch.Tensor]

DEFENSES: Registry = Registry("defense")


@dataclass(frozen=True)
class Filtered:
    """How a defense did on one poisoned set (the record's defense fields)."""

    keep: torch.Tensor
    poisons_removed: int
    clean_removed: int
    poisons: int

    @property
    def recall(self) -> float:
        return self.poisons_removed / self.poisons if self.poisons else 0.0

    def fields(self) -> dict[str, float | int]:
        kept = int(self.keep.sum())
        return {
            "poisons_removed": self.poisons_removed,
            "clean_removed": self.clean_removed,
            "poison_recall": self.recall,
            "clean_kept": kept - (self.poisons - self.poisons_removed),
        }


def score(keep: torch.Tensor, training: PoisonedSet) -> Filtered:
    """Count what a keep mask removed: poisons (recall) and clean points (the cost)."""
    keep = keep.to(torch.bool).cpu()
    is_poison = training.is_poison.cpu()
    if keep.shape != is_poison.shape:
        raise ValueError(
            f"a defense returned a mask of shape {tuple(keep.shape)}, expected "
            f"{tuple(is_poison.shape)}"
        )
    return Filtered(
        keep,
        poisons_removed=int((is_poison & ~keep).sum()),
        clean_removed=int((~is_poison & ~keep).sum()),
        poisons=int(is_poison.sum()),
    )


def by_class(labels: torch.Tensor) -> list[torch.Tensor]:
    """Row indices of each label present, in label order (the per-class defenses' unit)."""
    return [torch.nonzero(labels == label).flatten() for label in labels.unique(sorted=True)]


def filter_per_class(
    features: torch.Tensor,
    training: PoisonedSet,
    removed: Callable[[np.ndarray], np.ndarray],
    min_size: int,
) -> torch.Tensor:
    """A keep mask from a rule applied to each class's features on its own: ``removed`` gets one
    class's features (float64 NumPy) and returns the positions, within the class, to drop.
    Classes smaller than ``min_size`` are kept whole."""
    points = features.detach().cpu().double().numpy()
    keep = torch.ones(len(training.labels), dtype=torch.bool)
    for rows in by_class(training.labels.cpu()):
        if len(rows) >= min_size:
            drop = torch.as_tensor(removed(points[rows.numpy()]), dtype=torch.long)
            keep[rows[drop]] = False
    return keep
