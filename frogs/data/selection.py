"""Which test images are attacked (targets) and which are poisoned (bases)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from frogs.errors import ConfigError


@dataclass(frozen=True)
class TargetChoice:
    """A target's test-set index and, for outlier selection, its rank by clean confidence."""

    index: int
    outlier_rank: int | None


def choose_targets(
    candidates: torch.Tensor,
    true_probs: torch.Tensor,
    correct: torch.Tensor,
    *,
    mode: str,
    count: int,
    offset: int,
    generator: torch.Generator,
) -> list[TargetChoice]:
    """Targets ``offset .. offset+count-1`` of the ordering that ``mode`` defines.

    Only test images the clean victim classifies correctly are eligible (a target it already
    gets wrong would count as a free success). ``random``: a seeded permutation, so jobs that
    split the targets by ``trial_offset`` never overlap. ``outlier``: ascending clean confidence
    in the true class, the paper's outliers (Fig. 5a).
    """
    eligible = torch.nonzero(correct).flatten()
    if offset + count > len(eligible):
        raise ConfigError(
            f"trial_offset + trials = {offset + count} targets requested, but only "
            f"{len(eligible)} test images of the target class are correctly classified by the "
            "clean victim; lower trials or trial_offset"
        )
    if mode == "random":
        order = eligible[torch.randperm(len(eligible), generator=generator)]
        return [TargetChoice(int(candidates[i]), None) for i in order[offset : offset + count]]
    if mode == "outlier":
        order = eligible[torch.argsort(true_probs[eligible], stable=True)]
        return [
            TargetChoice(int(candidates[i]), offset + rank)
            for rank, i in enumerate(order[offset : offset + count])
        ]
    raise ConfigError(f"target_selection={mode!r} is not allowed; expected random or outlier")


def choose_bases(
    candidates: torch.Tensor,
    num_poisons: int,
    multi_base: bool,
    generator: torch.Generator,
    distances: torch.Tensor | None = None,
) -> torch.Tensor:
    """Test-set indices of the bases: distinct images, or one reused (``multi_base=False``).

    Random by default (a seeded permutation); with ``distances`` (each candidate's clean feature
    distance to the target) the nearest ones. Either way the first N bases are the same for any
    ``num_poisons`` >= N, which poison reuse across counts relies on.
    """
    needed = check_enough_bases(len(candidates), num_poisons, multi_base)
    if distances is None:
        order = torch.randperm(len(candidates), generator=generator)
    else:
        order = torch.argsort(distances, stable=True)
    chosen = candidates[order[:needed]]
    return chosen if multi_base else chosen.repeat(num_poisons)


def check_enough_bases(available: int, num_poisons: int, multi_base: bool) -> int:
    """How many distinct bases a trial needs; ConfigError when the base class has fewer."""
    needed = num_poisons if multi_base else 1
    if needed > available:
        raise ConfigError(
            f"attack.num_poisons={num_poisons} needs {needed} distinct base images with "
            f"multi_base=true, but the base class has only {available} test images"
        )
    return needed
