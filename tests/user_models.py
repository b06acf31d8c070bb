"""Networks a user brings with ``model=module`` (importable by ``model.builder._target_``).

``skip_net`` is a residual network whose forward is not a chain of its children: the skip adds
the block's input to its output, so a feature layer found by walking ``children()`` (what breaks
other tools on non-``nn.Sequential`` models) would miss it, while a graph node does not.
"""

from __future__ import annotations

import torch
from torch import nn


class SkipNet(nn.Module):
    """stem conv -> ReLU -> (h + block(h)) -> 2x2 average pool -> flatten -> fc."""

    def __init__(self, in_channels: int = 3, width: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
        self.block = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(width * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        h = h + self.block(h)  # the skip connection
        return self.fc(torch.flatten(self.pool(h), 1))


def skip_net(in_channels: int = 3, width: int = 8, num_classes: int = 10) -> SkipNet:
    """The builder ``model.builder._target_=tests.user_models.skip_net`` names."""
    return SkipNet(in_channels, width, num_classes)


def not_a_module(width: int = 8) -> int:
    """A builder that returns something other than an ``nn.Module``."""
    return width
