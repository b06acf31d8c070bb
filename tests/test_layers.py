"""frogs' LocalResponseNorm is torch's, bit for bit, forward and backward (frogs.models.layers)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from frogs.models.layers import LocalResponseNorm

CASES = [
    # (shape, size, alpha, beta, k): Table 1's two layers, odd and even windows, a window wider
    # than the channels, a batch of one
    ((16, 64, 16, 16), 9, 0.001, 0.75, 1.0),
    ((16, 64, 8, 8), 9, 0.001, 0.75, 1.0),
    ((3, 10, 5, 7), 4, 1e-4, 0.75, 2.0),
    ((2, 3, 4, 4), 5, 0.1, 0.5, 1.0),
    ((1, 64, 16, 16), 9, 0.001, 0.75, 1.0),
]


@pytest.mark.parametrize(("shape", "size", "alpha", "beta", "k"), CASES)
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_outputs_and_gradients_equal_torchs_exactly(shape, size, alpha, beta, k, scale):
    generator = torch.Generator().manual_seed(sum(shape) + size)
    x = torch.relu(torch.randn(shape, generator=generator)) * scale  # post-ReLU, zeros included
    upstream = torch.randn(shape, generator=generator)
    results = []
    for layer in (
        nn.LocalResponseNorm(size, alpha, beta, k),
        LocalResponseNorm(size, alpha, beta, k),
    ):
        leaf = x.clone().requires_grad_()
        out = layer(leaf)
        out.backward(upstream)
        results.append((out.detach(), leaf.grad))
    (torch_out, torch_grad), (ours_out, ours_grad) = results
    assert torch.equal(ours_out, torch_out)
    assert torch.equal(ours_grad, torch_grad)


def test_other_dtypes_and_ranks_run_torchs_own_function():
    layer = LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0)
    for x in (torch.rand(2, 64, 8, 8, dtype=torch.float64), torch.rand(2, 64, 8)):
        assert torch.equal(layer(x), F.local_response_norm(x, 9, 0.001, 0.75, 1.0))


def test_it_is_named_and_stored_as_torchs_layer():
    """The network's repr names cached clean models; it must not change with the layer."""
    ours, theirs = (
        LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0),
        nn.LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0),
    )
    assert repr(ours) == repr(theirs) and ours.state_dict() == theirs.state_dict() == {}
