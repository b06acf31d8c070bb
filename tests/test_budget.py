"""The perceptibility budget: projection onto the ball, 8-bit rounding inside it, eps parsing."""

from __future__ import annotations

import re

import pytest
import torch

from frogs.attacks.budget import Budget, quantize, quantize_within
from frogs.attacks.feature_collision import FeatureCollisionSettings
from frogs.config.settings import pixel_value, resolved_eps
from frogs.errors import ConfigError


def _random_8bit(*shape, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=gen).float() / 255


def _far_poisons(starts, seed):
    """Poisons well outside any small ball, some pixels outside [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    return starts + 0.6 * torch.randn(starts.shape, generator=gen)


def _per_image(values):
    return values.reshape(len(values), -1)


def _assert_8bit(images):
    levels = images * 255
    assert (levels - levels.round()).abs().max() <= 1e-4, "not on the 8-bit levels k/255"
    assert images.min() >= 0.0 and images.max() <= 1.0


@pytest.mark.parametrize("eps", [0.03, 0.2])
def test_project_linf_keeps_the_ball_and_the_pixel_range(eps):
    starts = _random_8bit(5, 3, 6, 6, seed=0)
    x = _far_poisons(starts, seed=1)
    budget = Budget("linf", eps)
    projected = budget.project(x, starts)
    assert (projected - starts).abs().max() <= eps + 1e-6
    assert projected.min() >= 0.0 and projected.max() <= 1.0
    assert torch.allclose(
        budget.distance(projected, starts), _per_image(projected - starts).abs().amax(1)
    )
    # a point already inside (and in [0, 1]) does not move
    inside = (starts + 0.5 * eps * torch.sign(0.5 - starts)).clamp(0, 1)
    assert torch.equal(budget.project(inside, starts), inside)


@pytest.mark.parametrize("eps", [0.05, 0.5, 2.0])
def test_project_l2_keeps_the_ball_and_the_pixel_range(eps):
    starts = _random_8bit(5, 3, 6, 6, seed=2)
    x = _far_poisons(starts, seed=3)
    budget = Budget("l2", eps)
    projected = budget.project(x, starts)
    distances = _per_image(projected - starts).norm(dim=1)
    assert (distances <= eps + 1e-5).all()
    assert torch.allclose(budget.distance(projected, starts), distances)
    assert projected.min() >= 0.0 and projected.max() <= 1.0
    # the far poisons land on the sphere before the [0, 1] clamp moves them further in
    unclamped = starts + (x - starts) * (eps / _per_image(x - starts).norm(dim=1)).view(-1, 1, 1, 1)
    assert torch.allclose(projected, unclamped.clamp(0, 1), atol=1e-6)
    # a point already inside (and in [0, 1]) does not move
    inside = starts + 0.5 * (projected - starts)
    assert torch.allclose(budget.project(inside, starts), inside, atol=1e-7)


def test_project_without_eps_only_clamps():
    starts = _random_8bit(2, 3, 4, 4, seed=4)
    x = _far_poisons(starts, seed=5)
    assert torch.equal(Budget("l2", None).project(x, starts), x.clamp(0, 1))


@pytest.mark.parametrize("eps_255", [1, 2, 8])
def test_quantize_within_linf(eps_255):
    eps = eps_255 / 255
    starts = _random_8bit(6, 3, 8, 8, seed=eps_255)
    poisons = _far_poisons(starts, seed=10 + eps_255)
    budget = Budget("linf", eps)
    quantized = quantize_within(poisons, starts, budget)
    _assert_8bit(quantized)
    assert (quantized - starts).abs().max() <= eps + 1e-6
    # every pixel takes the 8-bit level nearest to the projected poison: nothing needless is lost
    assert torch.allclose(quantized, quantize(budget.project(poisons, starts)), atol=1e-6)
    # the ball is used: far poisons reach its edge
    assert (quantized - starts).abs().max() >= eps - 1e-6


def test_quantize_within_linf_keeps_roundings_that_fit():
    starts = _random_8bit(4, 3, 8, 8, seed=20)
    gen = torch.Generator().manual_seed(21)
    eps = 8 / 255
    poisons = Budget("linf", eps).project(
        starts + eps * (2 * torch.rand(starts.shape, generator=gen) - 1), starts
    )
    assert torch.equal(quantize_within(poisons, starts, Budget("linf", eps)), quantize(poisons))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quantize_within_l2_random_poisons(seed):
    starts = _random_8bit(6, 3, 8, 8, seed=30 + seed)
    eps = 0.1 * (seed + 1)
    budget = Budget("l2", eps)
    # crafted poisons lie in the ball; rounding can push them out of it
    poisons = budget.project(_far_poisons(starts, seed=40 + seed), starts)
    quantized = quantize_within(poisons, starts, budget)
    _assert_8bit(quantized)
    assert (_per_image(quantized - starts).norm(dim=1) <= eps + 1e-6).all()
    # and stay close to the crafted poisons: within half a level RMS (plain rounding's bound)
    half_level = 0.5 * starts[0].numel() ** 0.5 / 255
    assert (_per_image(quantized - poisons).norm(dim=1) <= half_level).all()


def test_quantize_within_l2_where_plain_rounding_leaves_the_ball():
    starts = _random_8bit(3, 3, 8, 8, seed=50)
    gen = torch.Generator().manual_seed(51)
    n = starts[0].numel()
    # every pixel 0.6 levels away from its start (towards the inside of [0, 1]): rounding moves
    # each a whole level, to sqrt(n)/255 from the start, beyond a radius of 0.61 sqrt(n)/255
    direction = torch.where(starts < 0.5, 1.0, -1.0)
    jitter = 0.05 * torch.rand(starts.shape, generator=gen)
    poisons = starts + direction * (0.6 + jitter) / 255
    eps = 0.66 * n**0.5 / 255
    budget = Budget("l2", eps)
    assert (_per_image(poisons - starts).norm(dim=1) <= eps).all(), "the poisons start inside"
    rounded = quantize(poisons)
    assert (_per_image(rounded - starts).norm(dim=1) > eps).all(), "plain rounding should exceed"
    quantized = quantize_within(poisons, starts, budget)
    _assert_8bit(quantized)
    assert (_per_image(quantized - starts).norm(dim=1) <= eps + 1e-6).all()
    # it keeps as much of the perturbation as fits, rather than falling back to the start
    closer = _per_image(quantized - poisons).norm(dim=1) < _per_image(starts - poisons).norm(dim=1)
    assert closer.all()


def test_quantize_within_without_eps_only_rounds():
    starts = _random_8bit(3, 3, 8, 8, seed=60)
    poisons = _far_poisons(starts, seed=61)
    assert torch.equal(quantize_within(poisons, starts, Budget("l2", None)), quantize(poisons))
    _assert_8bit(quantize(poisons))


@pytest.mark.parametrize(
    "norm, eps, message",
    [
        ("l1", 0.1, "norm='l1'"),
        ("linf", None, "linf budget needs eps"),
        ("linf", 0.0, "eps=0.0"),
        ("l2", -0.5, "eps=-0.5"),
    ],
)
def test_budget_validation(norm, eps, message):
    with pytest.raises(ConfigError, match=message):
        Budget(norm, eps)


def test_budget_radius_in_255_units():
    assert Budget("linf", 2 / 255).eps_255 == pytest.approx(2.0)
    assert Budget("l2", None).eps_255 is None


def test_pixel_value_parses_numbers_and_per_255():
    assert pixel_value("8/255", "attack.eps") == 8 / 255
    assert pixel_value(" 2 / 255 ", "attack.eps") == 2 / 255
    assert pixel_value("0.5/255", "attack.eps") == 0.5 / 255
    assert pixel_value(0.1, "attack.eps") == 0.1
    assert pixel_value(1, "attack.eps") == 1.0
    assert pixel_value("0.03", "attack.eps") == 0.03
    assert resolved_eps(FeatureCollisionSettings(eps="8/255")) == 8 / 255
    assert resolved_eps(FeatureCollisionSettings(constraint="l2", eps=None)) is None


@pytest.mark.parametrize("value", ["8/256", "eight/255", "8/255/255", "", "abc", [8]])
def test_pixel_value_rejects_bad_values_naming_them(value):
    with pytest.raises(ConfigError, match=re.escape(f"attack.eps={value!r}")):
        pixel_value(value, "attack.eps")


def test_pixel_value_rejects_booleans():
    with pytest.raises(ConfigError, match=r"attack\.eps="):
        pixel_value(True, "attack.eps")
