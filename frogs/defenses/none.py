"""No defense (``defense=none``, the default): every sample is kept."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from frogs.config.settings import DefenseSettings
from frogs.defenses import DEFENSES, PoisonedSet


@dataclass(frozen=True)
class NoDefenseSettings(DefenseSettings):
    """No knobs; it reads no features."""

    name: str = "none"

    needs_features = False


@DEFENSES.register("none", NoDefenseSettings)
def keep_everything(
    settings: NoDefenseSettings, features: torch.Tensor | None, training: PoisonedSet
) -> torch.Tensor:
    """Keep every row."""
    return torch.ones(len(training.labels), dtype=torch.bool)
