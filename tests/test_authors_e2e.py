"""The official end-to-end crafting loop (``recipe=authors_e2e``) against a literal transcription.

The reference is ``make_instance`` + ``do_the_optimization`` + ``adjust_moving_back``
(neeharperi/DeepKNNDefense, ``FeatureCollision_AlexNet/poisoin-end-to-end-training-CIFAR10-
master/utils_cifar10_for_multiPoison.py``) for one poison, written out as the code reads, with
TF1's ``AdamOptimizer`` update spelled out, in float64 and [0, 255] pixels. frogs runs the loop
batched on [0, 1] images with per-poison state and must agree with it poison by poison.
"""

from __future__ import annotations

import math

import pytest
import torch

from frogs.attacks.authors_e2e import authors_e2e_feature_collision
from frogs.attacks.budget import Budget
from frogs.attacks.feature_collision import (
    FeatureCollisionSettings,
    craft_feature_collision,
    single_base_target_noise,
)
from tests.conftest import crafting_problem, tiny_conv_features


class TF1Adam:
    """TF1 ``AdamOptimizer._apply_dense``: lr_t = lr·√(1−β2ᵗ)/(1−β1ᵗ); x −= lr_t·m/(√v + ε)."""

    def __init__(self, shape, beta1=0.9, beta2=0.999, epsilon=1e-8):
        self.m = torch.zeros(shape, dtype=torch.float64)
        self.v = torch.zeros(shape, dtype=torch.float64)
        self.beta1_power, self.beta2_power = beta1, beta2  # the slots start at β, not 1
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon

    def apply(self, variable, grad, learning_rate):
        lr_t = learning_rate * math.sqrt(1 - self.beta2_power) / (1 - self.beta1_power)
        self.m = self.beta1 * self.m + (1 - self.beta1) * grad
        self.v = self.beta2 * self.v + (1 - self.beta2) * grad * grad
        self.beta1_power *= self.beta1
        self.beta2_power *= self.beta2
        return variable - lr_t * self.m / (self.v.sqrt() + self.epsilon)


def transcribed_make_instance(feature_fn, target, base_image, *, max_iter, noise=None):
    """One poison as ``make_instance`` makes it: [0, 255] pixels, λ 0.01, β 0.1, fresh Adam.

    Returns the poison (as ``do_the_optimization`` returns the variable), the iterations whose
    step was rejected, and the iteration at which it stopped early (None: ran to ``max_iter``).
    """
    coeff_sim_inp, learning_rate = 0.1, 0.01
    decay_coef, stopping_tol = 0.2, 1e-5

    def feats(image):  # the network sees the [0, 255] image as a [0, 1] one
        return feature_fn(image.unsqueeze(0) / 255.0).reshape(-1)

    feat_rep_adv = feats(target).detach()
    if noise is not None:
        feat_rep_adv = feat_rep_adv + noise
    optimizer = TF1Adam(base_image.shape)
    variable = base_image.clone()  # assign_var_image(baseImage)
    old_image = variable.clone()
    rejected, stopped_at = [], None
    for it in range(max_iter):
        old_obj = float((feats(variable) - feat_rep_adv).norm())
        x = variable.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad((feats(x) - feat_rep_adv).norm(), x)
        variable = optimizer.apply(variable, grad, learning_rate)  # sess.run(training_op)
        rel_change_val = float((variable - old_image).norm() / variable.norm())
        if rel_change_val < stopping_tol:
            stopped_at = it
            break
        new_obj = float((feats(variable) - feat_rep_adv).norm())
        new_candid = variable.clone()
        # adjust_moving_back: major_coef is 0, so only the (watermarked) base term remains
        new_candid = (coeff_sim_inp * learning_rate * base_image + new_candid) / (
            coeff_sim_inp * learning_rate + 1
        )
        if new_obj >= old_obj:
            learning_rate *= decay_coef
            variable = old_image.clone()
            rejected.append(it)
        else:
            old_image = new_candid
            variable = new_candid.clone()
    return variable.detach(), rejected, stopped_at


@pytest.fixture
def net64():
    """A small conv feature map in float64, fixed weights (the transcription's arithmetic)."""
    return tiny_conv_features(channels=6, features=12, dtype=torch.float64)


def _images(count: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    target = torch.rand(3, 8, 8, generator=generator, dtype=torch.float64)
    bases = torch.rand(count, 3, 8, 8, generator=generator, dtype=torch.float64)
    return target, 0.3 * target + 0.7 * bases  # watermarked at 30 %


def _reference(net, target, starts, max_iter, noise=None):
    runs = [
        transcribed_make_instance(
            net, target * 255, start * 255, max_iter=max_iter, noise=None if noise is None else n
        )
        for start, n in zip(
            starts, noise if noise is not None else [None] * len(starts), strict=True
        )
    ]
    poisons = torch.stack([poison for poison, _, _ in runs]) / 255
    return poisons, runs


def test_batched_loop_equals_the_transcribed_code(net64):
    target, starts = _images(3)
    poisons, runs = _reference(net64, target, starts, max_iter=300)
    result = authors_e2e_feature_collision(net64, target, starts, iters=300)
    assert torch.allclose(result.poisons, poisons, rtol=0, atol=1e-9)
    for i, (_, rejected, stopped_at) in enumerate(runs):
        assert int(result.rejected[i]) == len(rejected)
        assert bool(result.stopped_early[i]) == (stopped_at is not None)
    # the loop moved the poisons toward the target's features
    assert bool((result.final_distance < result.start_distance).all())


def test_rejected_steps_and_the_early_stop_match_the_code(net64):
    """A large λ overshoots: steps are rejected (λ × 0.2, x kept, Adam's state kept) until λ is so
    small that the relative change falls below 1e-5 and the poison stops, returning the Adam
    iterate itself. Both branches must be exercised here, and agree with the transcription."""

    def first_pixels(x):  # features: three pixels, so the target's features are reachable
        return x.flatten(1)[:, :3]

    target, starts = _images(2, seed=4)
    # dark images (‖x‖ small, so a few rejections bring the relative change under 1e-5) whose
    # first pixels start a few Adam steps of 0.01 from the target's
    target, starts = 0.01 * target, 0.01 * starts
    offsets = torch.tensor([[0.05, -0.03, 0.02], [-0.04, 0.06, 0.01]], dtype=torch.float64)
    starts.view(2, -1)[:, :3] = target.flatten()[:3] + offsets / 255
    poisons, runs = _reference(first_pixels, target, starts, max_iter=400)
    assert all(rejected for _, rejected, _ in runs), "no step was rejected: the test is vacuous"
    assert any(stopped is not None for _, _, stopped in runs), "no poison stopped early"
    result = authors_e2e_feature_collision(first_pixels, target, starts, iters=400)
    assert torch.allclose(result.poisons, poisons, rtol=0, atol=1e-9)
    for i, (_, rejected, stopped_at) in enumerate(runs):
        assert int(result.rejected[i]) == len(rejected)
        assert bool(result.stopped_early[i]) == (stopped_at is not None)
        if stopped_at is not None:
            assert int(result.iterations[i]) == stopped_at + 1


def test_target_noise_is_added_per_poison(net64):
    target, starts = _images(2, seed=2)
    noise = torch.randn(2, 12, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    noise *= 0.05
    poisons, _ = _reference(net64, target, starts, max_iter=60, noise=noise)
    result = authors_e2e_feature_collision(net64, target, starts, iters=60, target_noise=noise)
    assert torch.allclose(result.poisons, poisons, rtol=0, atol=1e-9)


def test_the_first_poisons_do_not_depend_on_how_many_are_crafted(net64):
    target, starts = _images(5, seed=3)
    many = authors_e2e_feature_collision(net64, target, starts, iters=80)
    few = authors_e2e_feature_collision(net64, target, starts[:2], iters=80)
    assert torch.allclose(many.poisons[:2], few.poisons, rtol=0, atol=1e-12)


def test_single_base_noise_has_the_same_first_rows_for_any_count():
    settings = FeatureCollisionSettings(recipe="authors_e2e", multi_base=False)
    torch.manual_seed(11)
    five = single_base_target_noise(settings, 5, 192)
    torch.manual_seed(11)
    two = single_base_target_noise(settings, 2, 192)
    assert torch.equal(five[:2], two)
    assert 0.04 < float(five.std()) < 0.06  # std 0.05 (measured 0.0499 at this seed)
    multi = FeatureCollisionSettings(recipe="authors_e2e", multi_base=True)
    assert single_base_target_noise(multi, 5, 192) is None


def test_the_attack_clips_and_rounds_and_records_both_distances(tiny_feature_fn):
    """The authors_e2e recipe through the attack contract (λ = 1 so that 50 steps outlast 8-bit
    rounding): the poisons are 8-bit images in [0, 1]; the record keeps the distance before
    clipping and rounding."""
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(3, 8, 8, generator=generator)
    bases = torch.rand(3, 3, 8, 8, generator=generator)
    settings = FeatureCollisionSettings(
        recipe="authors_e2e", lr=1.0, beta0=0.1, iters=50, constraint="l2", eps=None,
        opacity=0.3,
    )  # fmt: skip
    made = craft_feature_collision(
        settings, crafting_problem(settings, tiny_feature_fn, target, bases)
    )
    assert made.poisons.min() >= 0 and made.poisons.max() <= 1
    assert torch.equal(torch.round(made.poisons * 255) / 255, made.poisons)
    summary = made.record_metrics()
    for key in ("feat_dist_before", "feat_dist_after", "feat_dist_after_unclipped"):
        assert math.isfinite(summary[key]), key
    assert summary["feat_dist_after"] < summary["feat_dist_before"]
    assert summary["beta"] == 0.1  # not dimension-scaled
    assert made.first(2).record_metrics()["feat_dist_after"] == pytest.approx(
        float(made.per_poison["feat_dist_after"][:2].mean())
    )


def test_a_budget_keeps_the_loop_inside_its_ball(net64):
    target, starts = _images(2, seed=6)
    budget = Budget("linf", 2 / 255)
    result = authors_e2e_feature_collision(net64, target, starts, iters=50, budget=budget)
    assert float((result.poisons - starts).abs().max()) <= 2 / 255 + 1e-9
