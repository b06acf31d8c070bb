"""The perceptibility budget: where a poison may lie, during crafting and as an 8-bit image.

A budget is a ball around the crafting start (the base, watermarked when ``opacity > 0``) in
frogs' [0, 1] pixel units: ``linf`` (every pixel within ``eps``; the paper's App. C uses 2/255) or
``l2`` (‖p − start‖₂ ≤ ``eps``; ``eps=None`` leaves only Algorithm 1's proximal pull). Crafting
projects onto the ball after every step; ``quantize_within`` then turns the poisons into 8-bit
images (a real poison is an image file) without leaving the ball.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from frogs.errors import ConfigError

LEVELS = 255  # an 8-bit image: pixel values k / 255
NORMS = ("linf", "l2")
_BISECTION_STEPS = 24


@dataclass(frozen=True)
class Budget:
    """A ball of radius ``eps`` ([0, 1] pixel units) in norm ``norm`` around each crafting start."""

    norm: str
    eps: float | None

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ConfigError(f"budget norm={self.norm!r} is not allowed; expected linf or l2")
        if self.norm == "linf" and self.eps is None:
            raise ConfigError("a linf budget needs eps (a radius in [0, 1] pixel units)")
        if self.eps is not None and not self.eps > 0:
            raise ConfigError(f"budget eps={self.eps!r} is not allowed; expected eps > 0")

    @property
    def eps_255(self) -> float | None:
        """The radius in the authors' [0, 255] pixel units (2/255 -> 2.0)."""
        return None if self.eps is None else self.eps * LEVELS

    def project(self, x: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """``x`` moved into the ball around ``start`` and into [0, 1] (per image, batched).

        Clamping to [0, 1] after the ball never leaves the ball: each pixel only moves towards its
        start value, which lies in [0, 1].
        """
        if self.eps is None:
            return x.clamp(0.0, 1.0)
        if self.norm == "linf":
            x = torch.minimum(torch.maximum(x, start - self.eps), start + self.eps)
        else:
            delta = x - start
            norms = per_image(delta).norm(dim=1).clamp_min(1e-12)
            factor = (self.eps / norms).clamp(max=1.0)
            x = start + delta * factor.view(-1, *([1] * (x.ndim - 1)))
        return x.clamp(0.0, 1.0)

    def distance(self, x: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """Per-image distance to ``start`` in the budget's norm ([0, 1] pixel units)."""
        delta = per_image(x - start)
        return delta.abs().amax(dim=1) if self.norm == "linf" else delta.norm(dim=1)


def per_image(values: torch.Tensor) -> torch.Tensor:
    """A batch (N, ...) as N flat rows, for per-image norms."""
    return values.reshape(len(values), -1)


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Round [0, 1] pixels to the nearest 8-bit level ``k / 255``."""
    return torch.round(images.clamp(0.0, 1.0) * LEVELS) / LEVELS


def quantize_within(poisons: torch.Tensor, starts: torch.Tensor, budget: Budget) -> torch.Tensor:
    """8-bit poisons that stay inside ``budget`` around ``starts`` (which must be 8-bit already).

    L∞: round, then clip each pixel to the levels within ``eps`` of its start (there is always
    one: the start itself). L2: round; a poison that rounding pushed outside the ball is pulled
    towards its start by the largest factor in [0, 1] (bisection) whose rounding fits.
    """
    start_levels = torch.round(starts * LEVELS)
    levels = torch.round(poisons.clamp(0.0, 1.0) * LEVELS)
    if budget.eps is None:
        return levels / LEVELS
    radius = budget.eps * LEVELS
    if budget.norm == "linf":
        steps = float(int(radius + 1e-6))
        levels = torch.minimum(torch.maximum(levels, start_levels - steps), start_levels + steps)
        return levels.clamp(0, LEVELS) / LEVELS
    delta = poisons.clamp(0.0, 1.0) * LEVELS - start_levels
    over = per_image(levels - start_levels).norm(dim=1) > radius
    if bool(over.any()):
        low = torch.zeros(int(over.sum()), device=poisons.device)
        high = torch.ones_like(low)
        shape = (-1, *([1] * (poisons.ndim - 1)))
        for _ in range(_BISECTION_STEPS):
            mid = (low + high) / 2
            fits = per_image(torch.round(mid.view(shape) * delta[over])).norm(dim=1) <= radius
            low, high = torch.where(fits, mid, low), torch.where(fits, high, mid)
        levels[over] = start_levels[over] + torch.round(low.view(shape) * delta[over])
    return levels.clamp(0, LEVELS) / LEVELS
