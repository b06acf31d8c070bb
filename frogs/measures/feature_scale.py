"""The data's own scale in the clean feature space, to say how close a poison came to its target.

The paper (Sec. 4.1, Fig. 3a) reports that under the clean model the end-to-end poisons' features
*overlap* the target's. A feature distance means little without a scale, so every record
carries the scale of the clean training images themselves: each training image's distance to
its nearest other training image (the smallest and the median over the set), and the target's
distance to its nearest training image.

The criterion, fixed before any study was looked at: a poison **overlaps** its target when it is
closer to the target, in the clean feature space, than the target's nearest clean training
image is (``feat_dist(p, t) < target_nn_train_dist``): no clean image of the training set sits
between them. ``poisons_overlap_fraction`` is the share of a trial's poisons that do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from frogs.errors import ConfigError


def nearest_neighbour_distances(points: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Each point's distance to its nearest *other* point, in float64; exact duplicates are not
    neighbours (inf when a point has no other). Computed in chunks of rows as
    ‖a‖² + ‖b‖² − 2ab; a squared distance within ``DUPLICATE`` of the squared norms' size is
    that formula's rounding, i.e. the same point."""
    values = points.detach().cpu().double().flatten(1)
    squared = values.pow(2).sum(1)
    nearest = torch.empty(len(values), dtype=torch.float64)
    for start in range(0, len(values), chunk):
        rows, norms = values[start : start + chunk], squared[start : start + chunk, None]
        distances = norms + squared[None] - 2 * (rows @ values.T)
        same = distances <= DUPLICATE * (norms + squared[None])  # itself and exact duplicates
        distances = distances.clamp_min(0).sqrt().masked_fill(same, float("inf"))
        nearest[start : start + chunk] = distances.min(dim=1).values
    return nearest


#: Relative size below which a squared distance is rounding (float64 has ~1e-16).
DUPLICATE = 1e-10


@dataclass(frozen=True)
class FeatureScale:
    """Nearest-neighbour distances among the clean training images' features (one job's)."""

    train_nn_min: float
    train_nn_median: float

    def fields(self) -> dict[str, float]:
        return {
            "train_nn_dist_min": self.train_nn_min,
            "train_nn_dist_median": self.train_nn_median,
        }


def feature_scale(training_features: torch.Tensor) -> FeatureScale:
    """The smallest and median nearest-neighbour distance among the training features."""
    nearest = nearest_neighbour_distances(training_features)
    nearest = nearest[torch.isfinite(nearest)]
    if not len(nearest):
        raise ConfigError("the feature scale needs two distinct training points in feature space")
    return FeatureScale(float(nearest.min()), float(nearest.median()))


def target_overlap(
    target_features: torch.Tensor,
    poison_features: torch.Tensor,
    training_features: torch.Tensor,
) -> dict[str, float]:
    """The target's distance to its nearest training image and the share of poisons closer to
    the target than that (the overlap criterion in the module docstring)."""
    target_features = target_features.flatten().double()
    train = training_features.flatten(1).double().to(target_features.device)
    nearest_train = float((train - target_features).norm(dim=1).min())
    poison_distances = (poison_features.flatten(1).double() - target_features).norm(dim=1)
    return {
        "target_nn_train_dist": nearest_train,
        "poisons_overlap_fraction": float((poison_distances < nearest_train).double().mean()),
    }
