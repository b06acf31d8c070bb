"""What the training-set filters share: the defender's assumed number of poisons."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from frogs.config.settings import DefenseSettings, JobSettings
from frogs.errors import ConfigError


def require_auto_or_count(value: Any, name: str, auto: str) -> None:
    """A count knob that may be ``auto`` (``auto`` says what auto means): anything else than
    ``auto`` or an integer > 0 is a ConfigError naming the value."""
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return
    raise ConfigError(f"{name}={value!r} is not allowed; expected {auto} or an integer > 0")


@dataclass(frozen=True)
class FilterSettings(DefenseSettings):
    """``expected_poisons``: how many poisons the defender provisions for (Deep k-NN's k and the
    spectral removal rate follow from it). ``auto`` is the attack's own ``num_poisons``: an
    oracle defender, the papers' setting, and the most favourable one for the defense."""

    expected_poisons: Any = "auto"

    def check(self, job: JobSettings) -> None:
        super().check(job)
        require_auto_or_count(self.expected_poisons, "defense.expected_poisons", "auto")

    def resolve(self, job: JobSettings) -> FilterSettings:
        """``auto`` knobs as numbers for this job (recorded as resolved)."""
        if self.expected_poisons == "auto":
            return replace(self, expected_poisons=job.attack.num_poisons)
        return self
