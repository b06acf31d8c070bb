"""Deep k-NN (Peri et al., ECCV Workshops 2020): ``defense=deep_knn``.

A training point is removed when its label is not the plurality label of its k nearest
neighbours in the clean model's feature space (ties keep it). Feature-collision poisons sit among
the target class's features while carrying the base label, so their neighbours out-vote them.
Neighbours come from scikit-learn's exact search (Euclidean).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from frogs.config.settings import JobSettings
from frogs.defenses import DEFENSES, PoisonedSet
from frogs.defenses.filters import FilterSettings, require_auto_or_count

# k = KNN_PER_POISON x the expected number of poisons: the rule of thumb of the Deep k-NN paper
# (k should exceed the number of poisons, about twice is enough), as Witches' Brew's defense
# code also implements it.
KNN_PER_POISON = 2


@dataclass(frozen=True)
class DeepKnnSettings(FilterSettings):
    """``k``: neighbours that vote; ``auto`` = 2 x ``expected_poisons`` (the paper's rule of
    thumb)."""

    name: str = "deep_knn"
    k: Any = "auto"

    def check(self, job: JobSettings) -> None:
        super().check(job)
        require_auto_or_count(self.k, "defense.k", "auto (2 x the expected poisons)")

    def resolve(self, job: JobSettings) -> DeepKnnSettings:
        resolved = super().resolve(job)
        if resolved.k == "auto":
            return replace(resolved, k=KNN_PER_POISON * resolved.expected_poisons)
        return resolved


def plurality_disagrees(features: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """For each row: is its label's count among its k nearest other rows below the top count?"""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(labels) - 1)
    _, neighbours = NearestNeighbors(n_neighbors=k + 1).fit(features).kneighbors(features)
    rows = np.arange(len(labels))[:, None]
    # Drop each row itself (normally its own first neighbour; with exact duplicates it may not be).
    is_self = neighbours == rows
    others = np.where(
        is_self.any(1, keepdims=True),
        np.sort(np.where(is_self, len(labels), neighbours), axis=1)[:, :k],
        neighbours[:, :k],
    )
    votes = labels[others]
    classes = np.unique(labels)
    counts = (votes[:, :, None] == classes[None, None, :]).sum(1)
    own = counts[np.arange(len(labels)), np.searchsorted(classes, labels)]
    return own < counts.max(1)


@DEFENSES.register("deep_knn", DeepKnnSettings)
def deep_knn(
    settings: DeepKnnSettings, features: torch.Tensor, training: PoisonedSet
) -> torch.Tensor:
    """Keep the rows whose label is a plurality label among their k nearest neighbours."""
    points = features.detach().cpu().double().numpy()
    labels = training.labels.cpu().numpy()
    return torch.from_numpy(~plurality_disagrees(points, labels, int(settings.k)))
