"""Table 1's local response normalisation, bit for bit torch's, without torch's slow CPU kernel.

``nn.LocalResponseNorm`` sums the squared activations over a window of channels with
``avg_pool3d``, whose CPU kernels (and above all their backward) are a large share of an
AlexNet-CIFAR training step on a CPU. Adding the window's shifted channel slices one after another
in float32, then dividing by the window size, performs the same additions in the same order, so
on a CPU in float32 outputs and gradients equal torch's exactly
(tests/test_layers.py checks both); anywhere else (GPU, bf16 autocast, where rounding after each
addition would differ) torch's own function runs.

The class keeps torch's name and constructor, so a network's ``repr``, which names cached clean
models (``frogs.models.pretrain.clean_model_key``), and its state dict do not change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LocalResponseNorm(nn.LocalResponseNorm):
    """``nn.LocalResponseNorm`` with the window sum as slice additions on CPU float32 inputs."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.device.type != "cpu" or input.dtype != torch.float32 or input.dim() != 4:
            return super().forward(input)
        channels = input.shape[1]
        squares = F.pad(input * input, (0, 0, 0, 0, self.size // 2, (self.size - 1) // 2))
        window = squares[:, :channels]
        for offset in range(1, self.size):
            window = window + squares[:, offset : offset + channels]
        scale = (window / self.size).mul(self.alpha).add(self.k).pow(self.beta)
        return input / scale
