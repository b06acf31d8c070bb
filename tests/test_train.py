"""The training loop's learning-rate schedule (the pretraining recipes' decay)."""

from __future__ import annotations

import itertools

import pytest
import torch

from frogs.models.train import fit


def epoch_rates(monkeypatch, **schedule) -> list[float]:
    """The Adam rate of each epoch of a tiny ``fit`` (one step per epoch)."""
    rates: list[float] = []
    adam = torch.optim.Adam

    class Recording(adam):
        def step(self, *args, **kwargs):
            rates.append(self.param_groups[0]["lr"])
            return super().step(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", Recording)
    inputs, labels = torch.randn(4, 2), torch.zeros(4, dtype=torch.long)
    fit(
        torch.nn.Linear(2, 2),
        inputs,
        labels,
        epochs=6,
        lr=1e-3,
        batch_size=4,
        generator=torch.Generator().manual_seed(0),
        **schedule,
    )
    return rates


def test_exponential_decay_ends_at_the_final_rate(monkeypatch):
    rates = epoch_rates(monkeypatch, final_lr=1e-5)
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-5)
    ratios = [b / a for a, b in itertools.pairwise(rates)]
    assert max(ratios) == pytest.approx(min(ratios))  # one constant factor per epoch


def test_held_epochs_keep_the_initial_rate_then_decay(monkeypatch):
    rates = epoch_rates(monkeypatch, final_lr=1e-5, hold_epochs=3)
    assert rates[:3] == pytest.approx([1e-3] * 3)
    assert rates[3] < 1e-3 and rates[-1] == pytest.approx(1e-5)


def test_constant_rate_without_final_lr(monkeypatch):
    assert epoch_rates(monkeypatch) == pytest.approx([1e-3] * 6)
