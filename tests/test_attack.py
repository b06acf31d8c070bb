"""The crafting maths: Eq. 1 / Algorithm 1, the budget, watermarking, β scaling, 8-bit poisons."""

from __future__ import annotations

import pytest
import torch

from frogs.attacks.authors import INITIAL_STEP, authors_beta
from frogs.attacks.budget import Budget, quantize
from frogs.attacks.feature_collision import (
    FeatureCollisionSettings,
    craft_feature_collision,
    dimension_scaled_beta,
    feature_collision,
    proximal_step,
    watermark,
)
from frogs.errors import ConfigError, NumericalError
from tests.conftest import crafting_problem


@pytest.fixture
def images():
    gen = torch.Generator().manual_seed(1)
    target = torch.rand(3, 8, 8, generator=gen)
    bases = torch.rand(4, 3, 8, 8, generator=gen)
    return target, bases


def test_proximal_step_matches_closed_form():
    x_hat, base = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    lr, beta = 0.3, 0.7
    expected = (x_hat + lr * beta * base) / (1 + lr * beta)
    assert torch.allclose(proximal_step(x_hat, base, lr, beta), expected)
    # it is the minimiser of (beta/2)*||x-b||^2 + ||x - x_hat||^2 / (2 lr): a proximal step
    x = expected.clone().requires_grad_(True)
    objective = beta / 2 * (x - base).pow(2).sum() + (x - x_hat).pow(2).sum() / (2 * lr)
    (grad,) = torch.autograd.grad(objective, x)
    assert grad.abs().max() < 1e-5


def transcribed(feature_fn, target, base, iters, update):
    """One poison crafted by a plain loop: ``update(x, grad)`` is the step under test, applied to
    the gradient of ‖f(x) − f(t)‖² (the reference every batched variant is checked against)."""
    target_features = feature_fn(target.unsqueeze(0))
    x = base.unsqueeze(0).clone()
    for _ in range(iters):
        x.requires_grad_(True)
        loss = (feature_fn(x) - target_features).pow(2).sum()
        (grad,) = torch.autograd.grad(loss, x)
        x = update(x.detach(), grad)
    return x[0]


def test_plain_crafting_is_algorithm_1(tiny_feature_fn, images):
    target, bases = images
    lr, beta, iters = 0.05, 0.4, 12
    result = feature_collision(tiny_feature_fn, target, bases, iters=iters, lr=lr, beta=beta)
    for i, base in enumerate(bases):

        def update(x, grad, base=base):
            x_hat = x - lr * grad  # forward step
            return ((x_hat + lr * beta * base) / (1 + lr * beta)).clamp(0, 1)  # backward step

        x = transcribed(tiny_feature_fn, target, base, iters, update)
        assert torch.allclose(result.poisons[i], x, atol=1e-5), f"poison {i} deviates"
    assert result.iters_run == iters


def test_feature_distance_falls_and_pixels_stay_in_range(tiny_feature_fn, images):
    target, bases = images
    result = feature_collision(tiny_feature_fn, target, bases, iters=100, lr=10.0, beta=0.01)
    assert (result.final_distance < 0.75 * result.start_distance).all()
    assert result.poisons.min() >= 0.0 and result.poisons.max() <= 1.0


def test_sign_step_crafting_is_projected_sign_descent(tiny_feature_fn, images):
    """``step="sign"`` with an L∞ budget: x ← clip_[0,1](clip_ε(x − λ·sign(∇‖f(x) − f(t)‖²)))."""
    target, bases = images
    lr, eps, iters = 1 / 255, 4 / 255, 8
    result = feature_collision(
        tiny_feature_fn,
        target,
        bases,
        iters=iters,
        lr=lr,
        beta=0.3,  # ignored: under L∞ the clip replaces the proximal step
        budget=Budget("linf", eps),
        step="sign",
    )
    for i, base in enumerate(bases):

        def update(x, grad, base=base):
            x_hat = x - lr * grad.sign()
            return torch.minimum(torch.maximum(x_hat, base - eps), base + eps).clamp(0, 1)

        x = transcribed(tiny_feature_fn, target, base, iters, update)
        assert torch.allclose(result.poisons[i], x, atol=1e-5), f"poison {i} deviates"
    assert result.iters_run == iters
    moved = (result.poisons - bases).abs()
    assert moved.max() == pytest.approx(eps, abs=1e-6), "the poisons should reach the ball's edge"


def test_linf_poisons_stay_within_eps(tiny_feature_fn, images):
    target, bases = images
    eps = 4 / 255
    result = feature_collision(
        tiny_feature_fn, target, bases, iters=50, lr=0.5, beta=0.0, budget=Budget("linf", eps)
    )
    assert (result.poisons - bases).abs().max() <= eps + 1e-6
    assert (result.final_distance < result.start_distance).all()
    assert result.poisons.min() >= 0.0 and result.poisons.max() <= 1.0


def test_l2_budget_poisons_stay_within_eps(tiny_feature_fn, images):
    target, bases = images
    eps = 0.05
    kwargs = dict(iters=30, lr=10.0, beta=0.01)
    free = feature_collision(tiny_feature_fn, target, bases, **kwargs)
    bounded = feature_collision(tiny_feature_fn, target, bases, budget=Budget("l2", eps), **kwargs)
    free_norms = (free.poisons - bases).flatten(1).norm(dim=1)
    norms = (bounded.poisons - bases).flatten(1).norm(dim=1)
    assert (free_norms > eps).all(), "without the radius the poisons go further: a real test"
    assert (norms <= eps + 1e-6).all()
    assert (norms >= eps - 1e-4).any(), "the radius should be active"
    assert (bounded.final_distance < bounded.start_distance).all()
    assert bounded.poisons.min() >= 0.0 and bounded.poisons.max() <= 1.0


def test_l2_budget_crafting_is_proximal_then_projected(tiny_feature_fn, images):
    target, bases = images
    lr, beta, eps, iters = 10.0, 0.01, 0.05, 6
    result = feature_collision(
        tiny_feature_fn, target, bases, iters=iters, lr=lr, beta=beta, budget=Budget("l2", eps)
    )
    for i, base in enumerate(bases):

        def update(x, grad, base=base):
            x = proximal_step(x - lr * grad, base, lr, beta)
            delta = x - base
            return (base + delta * min(1.0, eps / float(delta.norm()))).clamp(0, 1)

        x = transcribed(tiny_feature_fn, target, base, iters, update)
        assert torch.allclose(result.poisons[i], x, atol=1e-5), f"poison {i} deviates"


def test_batched_crafting_equals_one_at_a_time(tiny_feature_fn, images):
    target, bases = images
    batch = feature_collision(tiny_feature_fn, target, bases, iters=20, lr=0.05, beta=0.2)
    for i in range(len(bases)):
        single = feature_collision(
            tiny_feature_fn, target, bases[i : i + 1], iters=20, lr=0.05, beta=0.2
        )
        assert torch.allclose(batch.poisons[i], single.poisons[0], atol=1e-5)


def test_lr_decay_never_increases_the_objective(tiny_feature_fn, images):
    target, bases = images
    beta = 0.1
    kwargs = dict(iters=40, lr=5.0, beta=beta)  # a step size large enough to overshoot
    decayed = feature_collision(tiny_feature_fn, target, bases, lr_decay=True, **kwargs)
    target_features = tiny_feature_fn(target.unsqueeze(0))

    def objective(x):
        return (tiny_feature_fn(x) - target_features).pow(2).sum(1) + beta * (x - bases).flatten(
            1
        ).pow(2).sum(1)

    assert (objective(decayed.poisons) <= objective(bases) + 1e-6).all()


def test_stop_distance_ends_crafting_early(tiny_feature_fn, images):
    target, bases = images
    start = feature_collision(tiny_feature_fn, target, bases, iters=1, lr=0.0 + 1e-9, beta=0.0)
    threshold = float(start.start_distance.max()) * 0.9
    result = feature_collision(
        tiny_feature_fn, target, bases, iters=500, lr=0.05, beta=0.0, stop_distance=threshold
    )
    assert result.iters_run < 500
    assert (result.final_distance < threshold).all()


def test_optimize_false_returns_the_bases(tiny_feature_fn, images):
    target, bases = images
    result = feature_collision(tiny_feature_fn, target, bases, iters=10, optimize=False)
    assert torch.equal(result.poisons, bases)
    assert result.iters_run == 0


def test_watermark_is_the_convex_blend(images):
    target, bases = images
    marked = watermark(bases, target, 0.3)
    assert torch.allclose(marked, 0.3 * target + 0.7 * bases)
    assert torch.equal(watermark(bases, target, 0.0), bases)
    assert torch.allclose(watermark(bases, target, 1.0), target.expand_as(bases))
    with pytest.raises(ConfigError, match=r"opacity=1\.5"):
        watermark(bases, target, 1.5)


def test_beta_is_scaled_by_dimensions():
    # the paper's InceptionV3 setting: 2048 features, 299x299x3 inputs
    assert dimension_scaled_beta(0.25, 2048, 299 * 299 * 3) == pytest.approx(
        0.25 * 2048**2 / (299 * 299 * 3) ** 2
    )


def test_bad_step_and_nan_features(images, tiny_feature_fn):
    target, bases = images
    with pytest.raises(ConfigError, match="step='adam'"):
        feature_collision(tiny_feature_fn, target, bases, step="adam")
    with pytest.raises(ConfigError, match="norm='l1'"):
        feature_collision(tiny_feature_fn, target, bases, budget=Budget("l1", 0.1))

    def exploding(x):
        return tiny_feature_fn(x) * (x.sum() * float("inf"))

    with pytest.raises(NumericalError):
        feature_collision(exploding, target, bases, iters=3)


@pytest.mark.parametrize("eps, opacity", [("8/255", 0.0), ("8/255", 0.3), ("2.5/255", 0.3)])
def test_run_feature_collision_makes_8bit_poisons_within_the_budget(
    tiny_feature_fn, images, eps, opacity
):
    target, bases = images
    settings = FeatureCollisionSettings(
        constraint="linf", eps=eps, quantize=True, iters=30, opacity=opacity
    )
    radius = float(eps.split("/")[0]) / 255
    problem = crafting_problem(settings, tiny_feature_fn, target, bases)
    output = craft_feature_collision(settings, problem)
    poisons, starts = output.poisons, output.starts
    assert torch.allclose(starts, quantize(opacity * target + (1 - opacity) * bases), atol=1e-6)
    for images_8bit in (poisons, starts):
        levels = images_8bit * 255
        assert (levels - levels.round()).abs().max() <= 1e-4, "not on the 8-bit levels k/255"
    assert (poisons - starts).abs().max() <= radius + 1e-6
    assert poisons.min() >= 0.0 and poisons.max() <= 1.0
    assert not torch.equal(poisons, starts), "crafting should move the poisons"
    assert problem.budget == Budget("linf", radius)
    assert output.metrics["beta"] is None  # L∞: no proximal pull
    # the reported distance is that of the rounded poisons
    target_features = tiny_feature_fn(target.unsqueeze(0))
    expected = (tiny_feature_fn(poisons) - target_features).norm(dim=1)
    summary = output.record_metrics()
    assert summary["feat_dist_after"] == pytest.approx(float(expected.mean()), abs=1e-5)
    assert summary["feat_dist_after_max"] == pytest.approx(float(expected.max()), abs=1e-5)
    assert summary["feat_dist_after_min"] == pytest.approx(float(expected.min()), abs=1e-5)
    assert summary["feat_dist_after"] < summary["feat_dist_before"]


def test_run_feature_collision_with_the_authors_recipe(tiny_feature_fn, images):
    target, bases = images
    settings = FeatureCollisionSettings(
        recipe="authors", constraint="l2", eps=None, lr=INITIAL_STEP, iters=5, quantize=True
    )
    output = craft_feature_collision(
        settings, crafting_problem(settings, tiny_feature_fn, target, bases)
    )
    assert output.metrics["beta"] == pytest.approx(authors_beta(0.25, 16, target.numel()))
    levels = output.poisons * 255
    assert (levels - levels.round()).abs().max() <= 1e-4
    assert 1 <= output.metrics["craft_iters_run"] <= 5
