"""Spectral signatures (Tran et al., NeurIPS 2018): ``defense=spectral_signatures``.

Per class, the clean model's features are centred and projected on their top singular vector;
the points with the largest squared projection (the outlier score) are removed, a fixed fraction
of every class. The paper removes 1.5 x the expected poison fraction; that is ``removal_rate=auto``
here (with ``expected_poisons`` poisons in a class, computed per class at filtering time). The
singular vector comes from scikit-learn's randomized SVD.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from frogs.config.settings import JobSettings
from frogs.defenses import DEFENSES, PoisonedSet, filter_per_class
from frogs.defenses.filters import FilterSettings
from frogs.errors import ConfigError

OVER_REMOVAL = 1.5  # Tran et al.: remove 1.5 x the expected number of poisons per class


@dataclass(frozen=True)
class SpectralSignaturesSettings(FilterSettings):
    """``removal_rate``: fraction of each class removed, in (0, 1); ``auto`` = 1.5 x the
    expected poisons / the class's size."""

    name: str = "spectral_signatures"
    removal_rate: Any = "auto"

    def check(self, job: JobSettings) -> None:
        super().check(job)
        rate = self.removal_rate
        if rate == "auto":
            return
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate < 1:
            raise ConfigError(
                f"defense.removal_rate={rate!r} is not allowed; expected auto or a number in (0, 1)"
            )


def outlier_scores(features: np.ndarray) -> np.ndarray:
    """Squared projection of each centred row on the top right singular vector."""
    from sklearn.utils.extmath import randomized_svd

    centred = features - features.mean(0, keepdims=True)
    _, _, components = randomized_svd(centred, n_components=1, random_state=0)
    return (centred @ components[0]) ** 2


def removal_count(settings: SpectralSignaturesSettings, class_size: int) -> int:
    """How many points of a class of ``class_size`` the defense removes."""
    if settings.removal_rate == "auto":
        rate = min(OVER_REMOVAL * settings.expected_poisons / class_size, 0.5)
    else:
        rate = float(settings.removal_rate)
    return min(math.ceil(rate * class_size), class_size - 1)


@DEFENSES.register("spectral_signatures", SpectralSignaturesSettings)
def spectral_signatures(
    settings: SpectralSignaturesSettings, features: torch.Tensor, training: PoisonedSet
) -> torch.Tensor:
    """Remove each class's top outlier scores along its top singular direction."""

    def removed(points: np.ndarray) -> np.ndarray:
        order = np.argsort(-outlier_scores(points), kind="stable")
        return order[: removal_count(settings, len(points))]

    return filter_per_class(features, training, removed, min_size=2)
