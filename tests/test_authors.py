"""The official code's crafting loop (``recipe=authors``) and its unit conversion to [0, 1] pixels.

The reference here is a literal, one-poison-at-a-time transcription of ``do_optimization``
(ashafahi/inceptionv3-transferLearn-poison, ``util_one_shot_kill_attack.py``) in its own [0, 255]
pixel units; frogs runs the loop batched on [0, 1] images and must agree with it.
"""

from __future__ import annotations

import pytest
import torch

from frogs.attacks.authors import (
    INITIAL_STEP,
    authors_beta,
    authors_feature_collision,
    equivalent_beta0_01,
    equivalent_lr_01,
)
from frogs.attacks.feature_collision import dimension_scaled_beta, forward_step, proximal_step


def _transcribed_do_optimization(feature_fn, target_img, base_img, *, coeff, lr, iters, threshold):
    """``do_optimization`` for one poison, pixels in [0, 255], written out as the code reads.

    ``threshold=None`` never stops on the objective. Returns the poison, its final feature
    distance, the iterations run, the iterations whose step was halved, and the objective
    history (``old_obj`` after every iteration, the initial one first).
    """
    decay_coef = 0.5
    stopping_tol = 1e-10
    m = 40

    def feat_rep(image):  # the network sees the [0, 255] image as a [0, 1] one
        return feature_fn(image.unsqueeze(0) / 255.0).reshape(-1)

    target_feat_rep = feat_rep(target_img)
    old_image = base_img.clone()
    old_feat_rep = feat_rep(old_image)
    old_obj = float((old_feat_rep - target_feat_rep).norm() + coeff * (old_image - base_img).norm())
    last_m_objs = [old_obj]
    learning_rate = lr
    iters_run = 0
    halved, objectives = [], [old_obj]
    for it in range(iters):
        # do_forward: a gradient step on the non-squared feature distance
        current = old_image.clone().requires_grad_(True)
        forward_loss = (feat_rep(current) - target_feat_rep).norm()
        (grad,) = torch.autograd.grad(forward_loss, current)
        new_image = old_image - learning_rate * grad
        # do_backward (not inf_norm): the proximal step towards the base, then clip to [0, 255]
        new_image = (coeff * learning_rate * base_img + new_image) / (coeff * learning_rate + 1)
        new_image = new_image.clamp(0.0, 255.0)
        rel_change_val = float((new_image - old_image).norm() / new_image.norm())
        if rel_change_val < stopping_tol or (threshold is not None and old_obj <= threshold):
            break
        iters_run += 1
        with torch.no_grad():
            new_feat_rep = feat_rep(new_image)
        new_obj = float(
            (new_feat_rep - target_feat_rep).norm() + coeff * (new_image - base_img).norm()
        )
        avg_of_last_m = sum(last_m_objs) / float(min(m, it + 1))
        # `iter % M/2 == 0` is `(iter % M) / 2 == 0`
        if new_obj >= avg_of_last_m and (it % m) / 2 == 0:
            learning_rate *= decay_coef
            new_image = old_image
            halved.append(it)
        else:
            old_image = new_image
            old_obj = new_obj
            old_feat_rep = new_feat_rep
        if it < m - 1:
            last_m_objs.append(new_obj)
        else:
            del last_m_objs[0]
            last_m_objs.append(new_obj)
        objectives.append(old_obj)
    final_diff = float((old_feat_rep - target_feat_rep).norm())
    return {
        "poison": old_image.detach(),
        "final_diff": final_diff,
        "iters_run": iters_run,
        "halved": halved,
        "objectives": objectives,
    }


def _reference_runs(feature_fn, target, bases, **kwargs):
    return [
        _transcribed_do_optimization(feature_fn, target * 255, base * 255, **kwargs)
        for base in bases
    ]


def _frogs_run(feature_fn, target, bases, *, coeff, lr, iters, threshold):
    return authors_feature_collision(
        feature_fn, target, bases, beta=coeff, iters=iters, lr=lr, threshold=threshold
    )


def _assert_same(reference, frogs_result, atol):
    poisons, _, final, iters_run = frogs_result
    assert iters_run == max(run["iters_run"] for run in reference)
    for i, run in enumerate(reference):
        assert torch.allclose(poisons[i], run["poison"] / 255, atol=atol), f"poison {i} deviates"
        assert float(final[i]) == pytest.approx(run["final_diff"], abs=atol)


@pytest.fixture
def images():
    gen = torch.Generator().manual_seed(1)
    target = torch.rand(3, 8, 8, generator=gen)
    bases = torch.rand(3, 3, 8, 8, generator=gen)
    return target, bases


def test_batched_loop_equals_the_transcribed_code(tiny_feature_fn, images):
    """frogs' batched loop on [0, 1] images = the code's loop on [0, 255] images, / 255."""
    target, bases = images
    # a step size large enough that the first step overshoots and is thrown away; a threshold
    # the three poisons reach after different numbers of iterations
    kwargs = dict(coeff=1e-6, lr=1e7, iters=100, threshold=0.13)
    reference = _reference_runs(tiny_feature_fn, target, bases, **kwargs)
    result = _frogs_run(tiny_feature_fn, target, bases, **kwargs)
    counts = [run["iters_run"] for run in reference]
    assert any(run["halved"] for run in reference), "the scenario never halves the step"
    assert all(count < kwargs["iters"] for count in counts), "the threshold stopped no poison"
    assert len(set(counts)) > 1, "the poisons should stop at different iterations"
    _assert_same(reference, result, atol=1e-5)
    target_features = tiny_feature_fn(target.unsqueeze(0))
    assert torch.allclose(result[1], (tiny_feature_fn(bases) - target_features).norm(dim=1))


def test_backtracking_checks_only_every_40th_iteration(tiny_feature_fn, images):
    """The code's ``iter % M/2 == 0`` quirk and per-poison stopping over a longer run.

    Float64 throughout, so 40+ iterations compare tightly (the dynamics at this step size
    amplify float32 rounding differences between batched and single-image passes).
    """
    net = tiny_feature_fn.double()
    target, bases = (t.double() for t in images)
    bases = bases[:2]  # the third base does not reach this threshold
    kwargs = dict(coeff=1e-6, lr=1e7, iters=60, threshold=0.09)
    reference = _reference_runs(net, target, bases, **kwargs)
    result = _frogs_run(net, target, bases, **kwargs)
    halved = sorted({it for run in reference for it in run["halved"]})
    assert 40 in halved, "the scenario should halve the step at the second check (iteration 40)"
    assert all(it % 40 == 0 for it in halved)
    # the objective also rose at iterations the code does not check, and those iterates were kept
    assert any(
        later > earlier
        for run in reference
        for earlier, later in zip(run["objectives"][1:40], run["objectives"][2:41], strict=False)
    )
    counts = [run["iters_run"] for run in reference]
    assert all(count < kwargs["iters"] for count in counts), "the threshold stopped no poison"
    assert max(counts) > 40 and len(set(counts)) > 1
    _assert_same(reference, result, atol=1e-9)


def _one_pixel_features(x):
    """A feature map that sees pixel (0, 0, 0) in [0, 255] units: the loop in one dimension."""
    return x[:, :1, 0, 0] * 255.0


def _one_pixel_images(target_pixel, base_pixels):
    gen = torch.Generator().manual_seed(3)
    target = torch.rand(3, 4, 4, generator=gen, dtype=torch.float64)
    bases = torch.rand(len(base_pixels), 3, 4, 4, generator=gen, dtype=torch.float64)
    target[0, 0, 0] = target_pixel / 255
    bases[:, 0, 0, 0] = torch.tensor(base_pixels, dtype=torch.float64) / 255
    return target, bases


def test_rejected_objectives_enter_the_40_window():
    """Every new objective joins the window, a rejected one too, and the window holds 40.

    One pixel, target 100, step 39 then 19.5 (the first step overshoots: rejected, halved), no
    pull to the base. Base 110 then bounces 110 <-> 90.5 (objectives 10, 9.5) and base 113 bounces
    113 <-> 93.5 (13, 6.5). At iteration 40 the window is the objectives of iterations 0..39,
    the rejected first one (29, resp. 26) included: base 110's 10 is below that mean and kept;
    base 113's 13 is not, so its step is halved. Leaving the rejected objective out of the window
    (or the window one shorter) would halve both.
    """
    target, bases = _one_pixel_images(100.0, [110.0, 113.0])
    kwargs = dict(coeff=0.0, lr=39.0, iters=42, threshold=None)
    reference = _reference_runs(_one_pixel_features, target, bases, **kwargs)
    assert [run["halved"] for run in reference] == [[0], [0, 40]]
    result = _frogs_run(_one_pixel_features, target, bases, **kwargs)
    _assert_same(reference, result, atol=1e-9)
    pixels = result[0][:, 0, 0, 0] * 255
    assert pixels.tolist() == pytest.approx([90.5, 103.25])


def test_threshold_applies_to_the_objective_and_tiny_changes_stop():
    """The stop compares ‖f(x) − f(t)‖ + β‖x − b‖ (not the feature distance) with the threshold;
    without a threshold the relative-change tolerance (1e-10) ends the run.

    One pixel, target 100, base 110, β = 0.5, step 2: the pixel goes 110, 109, 108.5, 108.25, ...
    towards 108, the objective 10, 9.5, 9.25, 9.125, ... The feature distance falls to 9 after
    one iteration, the objective below 9.2 only after three.
    """
    target, bases = _one_pixel_images(100.0, [110.0])
    kwargs = dict(coeff=0.5, lr=2.0, iters=100)
    reference = _reference_runs(_one_pixel_features, target, bases, threshold=9.2, **kwargs)
    assert reference[0]["objectives"] == pytest.approx([10.0, 9.5, 9.25, 9.125])
    result = _frogs_run(_one_pixel_features, target, bases, threshold=9.2, **kwargs)
    _assert_same(reference, result, atol=1e-9)
    assert result[3] == 3

    reference = _reference_runs(_one_pixel_features, target, bases, threshold=None, **kwargs)
    assert 10 < reference[0]["iters_run"] < kwargs["iters"]
    result = _frogs_run(_one_pixel_features, target, bases, threshold=None, **kwargs)
    _assert_same(reference, result, atol=1e-9)


def test_the_papers_numbers():
    assert INITIAL_STEP == 500 * 255
    beta = authors_beta(0.25, 2048, 299 * 299 * 3)  # Inception-v3: 2048 features, 299x299x3
    assert beta == pytest.approx(dimension_scaled_beta(0.25, 2048, 299 * 299 * 3))
    assert beta * INITIAL_STEP == pytest.approx(1.86, abs=0.005)  # "λβ ≈ 1.9 per iteration"
    assert equivalent_beta0_01(0.25) == pytest.approx(0.25 * 255**2)
    assert equivalent_beta0_01(0.25) == pytest.approx(16256.25)
    assert equivalent_lr_01(500 * 255) == pytest.approx(500 / 255)


def _authors_backward(x_hat255, base255, lr, coeff):
    """``do_backward`` without inf_norm: (coeff·lr·b + x̂) / (coeff·lr + 1), clipped to [0, 255]."""
    return ((coeff * lr * base255 + x_hat255) / (coeff * lr + 1)).clamp(0.0, 255.0)


@pytest.mark.parametrize(
    "lr, coeff", [(INITIAL_STEP, authors_beta(0.25, 2048, 299 * 299 * 3)), (3.0e4, 2.0e-3)]
)
def test_proximal_step_converts_between_pixel_units(lr, coeff):
    gen = torch.Generator().manual_seed(2)
    x_hat01 = torch.rand(2, 3, 5, 5, generator=gen, dtype=torch.float64)
    base01 = torch.rand(2, 3, 5, 5, generator=gen, dtype=torch.float64)
    authors = _authors_backward(x_hat01 * 255, base01 * 255, lr, coeff) / 255
    frogs_step = proximal_step(x_hat01, base01, equivalent_lr_01(lr), equivalent_beta0_01(coeff))
    assert torch.allclose(frogs_step.clamp(0, 1), authors, atol=1e-12)
    # β·255² with λ/255²: λβ, the weight of the pull towards the base, is unit-free
    assert equivalent_lr_01(lr) * equivalent_beta0_01(coeff) == pytest.approx(lr * coeff)


def test_one_authors_iteration_in_01_units(tiny_feature_fn, images):
    """Forward and backward step on [0, 255] pixels = the same steps on [0, 1] pixels with
    ``equivalent_lr_01`` and ``equivalent_beta0_01`` (the gradient scales by 1/255)."""
    net = tiny_feature_fn.double()
    target, bases = (t.double() for t in images)
    lr, coeff = 2.0e5, 3e-4
    target_features = net(target.unsqueeze(0))

    def gradient(x, scale):
        x = x.clone().requires_grad_(True)
        loss = (net(x / scale) - target_features).flatten(1).norm(dim=1).sum()
        return torch.autograd.grad(loss, x)[0]

    x255 = bases * 255
    step255 = _authors_backward(x255 - lr * gradient(x255, 255.0), x255, lr, coeff)
    x_hat01 = forward_step(bases, gradient(bases, 1.0), equivalent_lr_01(lr), "gradient")
    step01 = proximal_step(x_hat01, bases, equivalent_lr_01(lr), equivalent_beta0_01(coeff))
    assert not torch.allclose(step01, bases, atol=1e-6), "the step should move the pixels"
    assert torch.allclose(step01.clamp(0, 1), step255 / 255, atol=1e-12)
    # and frogs' loop takes that step (a small step: the objective falls, nothing is rejected)
    poisons, *_ = authors_feature_collision(
        net, target, bases, beta=coeff, iters=1, lr=lr, threshold=None
    )
    assert torch.allclose(poisons, step255 / 255, atol=1e-12)
