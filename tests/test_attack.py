"""The crafting maths: Eq. 1 / Algorithm 1, its constraints, watermarking and β scaling."""

from __future__ import annotations

import pytest
import torch

from frogs.attack import (
    dimension_scaled_beta,
    feature_collision,
    proximal_step,
    watermark,
)
from frogs.errors import ConfigError, NumericalError


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


def test_plain_crafting_is_algorithm_1(tiny_feature_fn, images):
    target, bases = images
    lr, beta, iters = 0.05, 0.4, 12
    result = feature_collision(tiny_feature_fn, target, bases, iters=iters, lr=lr, beta=beta)
    target_features = tiny_feature_fn(target.unsqueeze(0))
    for i, base in enumerate(bases):
        x = base.unsqueeze(0).clone()
        for _ in range(iters):
            x.requires_grad_(True)
            loss = (tiny_feature_fn(x) - target_features).pow(2).sum()
            (grad,) = torch.autograd.grad(loss, x)
            x_hat = x.detach() - lr * grad  # forward step
            x = ((x_hat + lr * beta * base) / (1 + lr * beta)).clamp(0, 1)  # backward step
        assert torch.allclose(result.poisons[i], x[0], atol=1e-5), f"poison {i} deviates"
    assert result.iters_run == iters


def test_feature_distance_falls_and_pixels_stay_in_range(tiny_feature_fn, images):
    target, bases = images
    result = feature_collision(tiny_feature_fn, target, bases, iters=100, lr=10.0, beta=0.01)
    assert (result.final_distance < 0.75 * result.start_distance).all()
    assert result.poisons.min() >= 0.0 and result.poisons.max() <= 1.0


def test_linf_poisons_stay_within_eps(tiny_feature_fn, images):
    target, bases = images
    eps = 4 / 255
    result = feature_collision(
        tiny_feature_fn, target, bases, iters=50, lr=0.5, beta=0.0, constraint="linf", eps=eps
    )
    assert (result.poisons - bases).abs().max() <= eps + 1e-6
    assert (result.final_distance < result.start_distance).all()
    assert result.poisons.min() >= 0.0 and result.poisons.max() <= 1.0


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


def test_bad_constraint_and_nan_features(images, tiny_feature_fn):
    target, bases = images
    with pytest.raises(ConfigError, match="constraint='l1'"):
        feature_collision(tiny_feature_fn, target, bases, constraint="l1")

    def exploding(x):
        return tiny_feature_fn(x) * (x.sum() * float("inf"))

    with pytest.raises(NumericalError):
        feature_collision(exploding, target, bases, iters=3)
