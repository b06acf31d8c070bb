"""The training loop's learning-rate schedule (the pretraining recipes' decay)."""

from __future__ import annotations

import itertools

import pytest
import torch

from frogs.experiment.seeds import retrain_seeds
from frogs.models.train import TrainSeeds, fit, seeded


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


def test_seeded_draws_the_same_and_leaves_the_global_rng_as_it_was():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    with seeded(7):
        first = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), before)
    with seeded(7):
        assert torch.equal(torch.rand(3), first)
    assert torch.equal(torch.get_rng_state(), before)


def test_the_retraining_stream_is_per_job_and_keeps_the_recorded_values():
    """One seed set for the control and every trial of a job; its values are the ones every
    committed record was retrained with (job seed; seed + 1 for the poisons' slots)."""
    assert retrain_seeds(5) == TrainSeeds(init=5, order=5, slots=6)
    assert retrain_seeds(5) != retrain_seeds(6)


def test_a_retraining_run_does_not_touch_the_global_rng():
    from frogs.victims.retrainer import Retrainer
    from frogs.victims.transfer import TransferSettings

    retrainer = Retrainer(TransferSettings(epochs=1, batch_size=4), retrain_seeds(0))
    torch.manual_seed(99)
    before = torch.get_rng_state()
    head = torch.nn.Linear(3, 2)
    after_init = torch.get_rng_state()
    x, y = torch.randn(8, 3, generator=torch.Generator().manual_seed(1)), torch.arange(8) % 2
    retrainer.fit(head, x, y, num_clean=8, on_epoch=lambda _: None, progress=None)
    assert torch.equal(torch.get_rng_state(), after_init)
    assert not torch.equal(before, after_init)  # the check can fail: init did draw
