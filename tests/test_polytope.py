"""Convex and Bullseye Polytope against their papers' update rules, on tiny problems.

Each attack: its objective falls, the budget holds, and on a linear extractor the crafted poisons
equal a direct NumPy transcription of the update rule (coefficients on the simplex by projected
gradient steps of size 1/L, then one Adam step on the poisons, then the clip to the L-inf ball
and to [0, 1]).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frogs.attacks.budget import Budget
from frogs.attacks.bullseye_polytope import BullseyePolytopeSettings, craft_bullseye_polytope
from frogs.attacks.convex_polytope import (
    ConvexPolytopeSettings,
    craft_convex_polytope,
    craft_polytope,
    project_to_simplex,
)
from tests.conftest import crafting_problem


def test_simplex_projection_meets_its_optimality_conditions():
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(50, 7, generator=gen, dtype=torch.float64) * 3
    p = project_to_simplex(v)
    assert (p >= 0).all()
    assert torch.allclose(p.sum(-1), torch.ones(50, dtype=torch.float64))
    # KKT: p = max(v - theta, 0) for one theta per row
    for row_v, row_p in zip(v, p, strict=True):
        support = row_p > 0
        theta = (row_v[support] - row_p[support]).mean()
        assert torch.allclose(row_v[support] - row_p[support], theta.expand(int(support.sum())))
        assert (row_v[~support] <= theta + 1e-12).all()


def _linear_problem(count=3, size=4, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(dim, 3 * size * size))
    target = rng.uniform(0.2, 0.8, size=(3, size, size))
    bases = rng.uniform(0.2, 0.8, size=(count, 3, size, size))
    return weights, target, bases


def _numpy_polytope(weights, target, bases, *, eps, lr, iters, bullseye, coefficient_steps):
    """The papers' loop written out in NumPy for phi(x) = W x (float64)."""
    count = len(bases)
    t = weights @ target.ravel()
    x = bases.reshape(count, -1).copy()
    b = x.copy()
    c = np.full(count, 1.0 / count)
    m, v = np.zeros_like(x), np.zeros_like(x)
    beta1, beta2, adam_eps = 0.9, 0.999, 1e-8

    def simplex(y):
        u = np.sort(y)[::-1]
        cumulative = np.cumsum(u) - 1
        rho = np.nonzero(u - cumulative / np.arange(1, len(y) + 1) > 0)[0][-1]
        return np.maximum(y - cumulative[rho] / (rho + 1), 0)

    for step in range(1, iters + 1):
        phi = x @ weights.T  # (k, d)
        if not bullseye:
            gram = phi @ phi.T
            lipschitz = np.linalg.eigvalsh(gram).max()
            for _ in range(coefficient_steps):
                c = simplex(c - (gram @ c - phi @ t) / lipschitz)
            residual = t - c @ phi
            grad = -np.outer(c, weights.T @ residual) / (t @ t)
        else:
            residual = t - phi.mean(0)
            grad = -np.tile(weights.T @ residual, (count, 1)) / (
                count * np.linalg.norm(residual) * np.linalg.norm(t)
            )
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad**2
        m_hat, v_hat = m / (1 - beta1**step), v / (1 - beta2**step)
        x = x - lr * m_hat / (np.sqrt(v_hat) + adam_eps)
        x = np.clip(np.clip(x, b - eps, b + eps), 0.0, 1.0)
    return x.reshape(bases.shape), c


@pytest.mark.parametrize("bullseye", [False, True], ids=["convex", "bullseye"])
def test_polytope_matches_a_direct_transcription_of_the_update_rule(bullseye):
    weights, target, bases = _linear_problem()
    eps, lr, iters = 8 / 255, 0.01, 25
    expected, expected_c = _numpy_polytope(
        weights,
        target,
        bases,
        eps=eps,
        lr=lr,
        iters=iters,
        bullseye=bullseye,
        coefficient_steps=3,
    )
    w = torch.from_numpy(weights)
    poisons, coefficients, (before, after) = craft_polytope(
        [lambda x: x.flatten(1) @ w.T],
        torch.from_numpy(target),
        torch.from_numpy(bases),
        Budget("linf", eps),
        iters=iters,
        lr=lr,
        bullseye=bullseye,
        coefficient_steps=3,
    )
    assert np.abs(poisons.numpy() - expected).max() < 1e-9
    if not bullseye:
        assert np.abs(coefficients[0].numpy() - expected_c).max() < 1e-9
    assert after < before


@pytest.mark.parametrize(
    "settings, craft",
    [
        (ConvexPolytopeSettings(iters=40, lr=0.01), craft_convex_polytope),
        (BullseyePolytopeSettings(iters=40, lr=0.01), craft_bullseye_polytope),
    ],
    ids=["convex", "bullseye"],
)
def test_polytope_attacks_lower_their_objective_within_the_budget(tiny_feature_fn, settings, craft):
    gen = torch.Generator().manual_seed(3)
    target = torch.rand(3, 8, 8, generator=gen)
    bases = (torch.rand(5, 3, 8, 8, generator=gen) * 255).round() / 255
    crafted = craft(settings, crafting_problem(settings, tiny_feature_fn, target, bases))
    metrics = crafted.metrics
    assert metrics["polytope_loss_after"] < 0.8 * metrics["polytope_loss_before"]
    assert (crafted.poisons - bases).abs().max() <= 8 / 255 + 1e-6
    levels = crafted.poisons * 255
    assert (levels - levels.round()).abs().max() <= 1e-4, "poisons are 8-bit images"
    assert torch.equal(crafted.starts, bases)
    coefficients = torch.tensor(metrics["coefficients"])
    assert coefficients.min() >= 0 and coefficients.sum() == pytest.approx(1.0, abs=1e-5)


def test_an_ensemble_is_crafted_against_every_member(tiny_feature_fn):
    """With two extractors the objective averages both: the poisons differ from one member's."""
    torch.manual_seed(5)
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 12))
    gen = torch.Generator().manual_seed(4)
    target = torch.rand(3, 8, 8, generator=gen)
    bases = (torch.rand(3, 3, 8, 8, generator=gen) * 255).round() / 255
    settings = BullseyePolytopeSettings(num_poisons=3, iters=20, lr=0.01)
    alone = craft_bullseye_polytope(
        settings, crafting_problem(settings, tiny_feature_fn, target, bases)
    )
    both = craft_bullseye_polytope(
        settings,
        crafting_problem(
            settings, tiny_feature_fn, target, bases, extractors=[tiny_feature_fn, other]
        ),
    )
    assert not torch.equal(alone.poisons, both.poisons)
