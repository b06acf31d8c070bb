"""Activation clustering (Chen et al., 2018): ``defense=activation_clustering``.

Per class, the clean model's features are reduced to ``dims`` independent components (FastICA,
as the paper) and split in two by k-means; the smaller cluster is removed when it holds at most
``max_cluster_fraction`` of the class (the paper's relative-size rule; 0.35 as in ART's
implementation). scikit-learn does the ICA and the k-means.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from frogs.config.settings import DefenseSettings, JobSettings, require_positive
from frogs.defenses import DEFENSES, PoisonedSet, filter_per_class
from frogs.errors import ConfigError


@dataclass(frozen=True)
class ActivationClusteringSettings(DefenseSettings):
    """``dims``: ICA components per class; ``max_cluster_fraction``: the largest relative size of
    a cluster that is still removed, in (0, 0.5] (0.35: ART's default threshold); ``seed``: ICA
    and k-means initialisation."""

    name: str = "activation_clustering"
    dims: int = 10
    max_cluster_fraction: float = 0.35
    seed: int = 0

    def check(self, job: JobSettings) -> None:
        super().check(job)
        require_positive(self.dims, "defense.dims")
        if not 0 < self.max_cluster_fraction <= 0.5:
            raise ConfigError(
                f"defense.max_cluster_fraction={self.max_cluster_fraction!r} is not allowed; "
                "expected a number in (0, 0.5]"
            )


def smaller_cluster(features: np.ndarray, dims: int, seed: int) -> tuple[np.ndarray, float]:
    """The rows of the smaller of two k-means clusters after ICA, and its relative size."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import FastICA

    components = max(1, min(dims, len(features) - 1, features.shape[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ICA convergence on a few dozen points is not the test
        reduced = FastICA(components, random_state=seed, whiten="unit-variance").fit_transform(
            features
        )
    assignment = KMeans(2, n_init=10, random_state=seed).fit_predict(reduced)
    sizes = np.bincount(assignment, minlength=2)
    small = int(np.argmin(sizes))
    return np.nonzero(assignment == small)[0], float(sizes[small] / len(features))


@DEFENSES.register("activation_clustering", ActivationClusteringSettings)
def activation_clustering(
    settings: ActivationClusteringSettings, features: torch.Tensor, training: PoisonedSet
) -> torch.Tensor:
    """Remove, per class, the smaller k-means cluster when it is small enough."""

    def removed(points: np.ndarray) -> np.ndarray:
        members, fraction = smaller_cluster(points, settings.dims, settings.seed)
        return members if fraction <= settings.max_cluster_fraction else members[:0]

    return filter_per_class(features, training, removed, min_size=3)
