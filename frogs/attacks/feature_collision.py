"""Feature collision (Shafahi et al. 2018, Eq. 1, Algorithm 1): ``attack=feature_collision``.

``feature_collision`` crafts all poisons of a trial at once: one forward/backward pass of the
stacked poisons per iteration, the target's features computed once. Poisons are independent
(the network is in eval mode), so batching changes speed, not results.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import torch
from tqdm.auto import tqdm

from frogs.attacks import (
    ATTACKS,
    Crafted,
    CraftingProblem,
    FeatureFn,
    feature_distances,
)
from frogs.attacks.authors import authors_feature_collision, dimension_scaled_beta
from frogs.attacks.budget import Budget, per_image, quantize, quantize_within
from frogs.config.settings import AttackSettings, JobSettings, require_choice, require_positive
from frogs.errors import ConfigError, NumericalError
from frogs.models.precision import autocast, channels_last

log = logging.getLogger(__name__)


class Recipe(StrEnum):
    """algorithm1: Alg. 1 on [0, 1] pixels | authors: the official transfer code's loop |
    authors_e2e: the official end-to-end code's loop (both in [0, 255] pixels)."""

    algorithm1 = "algorithm1"
    authors = "authors"
    authors_e2e = "authors_e2e"


RECIPES = tuple(Recipe)
#: Record fields only ``recipe=authors_e2e`` measures (means over the poisons).
AUTHORS_E2E_METRICS = (
    "feat_dist_after_unclipped",
    "craft_rejected_steps",
    "craft_stopped_early",
    "craft_iters_per_poison",
)


class Step(StrEnum):
    """sign (x - lr * sign(grad), PGD-style) | gradient (x - lr * grad, Alg. 1)."""

    gradient = "gradient"
    sign = "sign"


STEPS = tuple(Step)


@dataclass(frozen=True)
class FeatureCollisionSettings(AttackSettings):
    """Feature collision's knobs (Eq. 1, Algorithm 1) and its variants.

    Pixel units: with ``recipe=algorithm1`` every pixel-valued knob (``eps``, ``lr``'s steps, the
    proximal ``beta``) is in frogs' [0, 1] pixels; ``recipe=authors`` runs the official transfer
    code's loop in its [0, 255] pixels (``lr``, ``beta0`` as in that code); ``recipe=authors_e2e``
    the official end-to-end code's Adam loop in [0, 255] pixels (``lr`` is Adam's rate, ``beta0``
    the code's prox weight β itself, not dimension-scaled). ``eps`` is always in [0, 1] pixels
    and also takes the form ``"N/255"``.
    """

    name: str = "feature_collision"
    # algorithm1: Alg. 1 on [0, 1] pixels | authors: the official transfer code's loop |
    # authors_e2e: the official end-to-end code's loop (both in [0, 255] pixels)
    recipe: Recipe = Recipe.algorithm1
    # watermark gamma: start = gamma * target + (1 - gamma) * base (Sec. 4.2 uses 0.2-0.3)
    opacity: float = 0.0
    iters: int = 1000  # crafting iterations (at most)
    # forward step: sign (x - lr * sign(grad), PGD-style) | gradient (x - lr * grad, Alg. 1)
    step: Step = Step.sign
    # forward-step size; sign: [0, 1] pixels per step (0.5/255); gradient: [0, 1] pixels per unit
    # gradient
    lr: float = 0.5 / 255
    # proximal weight of Alg. 1's backward step (l2 only): beta = beta0 * D_feat^2 / D_in^2 on
    # [0, 1] pixels
    beta0: float = 0.25
    # stop a poison once ||f(p) - f(t)|| < this; auto: the smallest distance between two training
    # features (the paper: 3)
    stop_distance: Any = None
    lr_decay: bool = False  # algorithm1: reject a step that raises Eq. 1, halve that poison's step
    optimize: bool = True  # false: watermark only, no crafting (the ablation)
    # authors_e2e with multi_base=false: std of the Gaussian noise added to the target's features
    # for each poison (the official code's single-base arm: 0.05), so the poisons differ
    target_noise: float = 0.05

    def check(self, job: JobSettings) -> None:
        super().check(job)
        require_choice(self.recipe, "attack.recipe", RECIPES)
        require_choice(self.step, "attack.step", STEPS)
        require_positive(self.lr, "attack.lr")
        require_positive(self.beta0, "attack.beta0", allow_zero=True)
        require_positive(self.target_noise, "attack.target_noise", allow_zero=True)
        if not 0.0 <= self.opacity <= 1.0:
            raise ConfigError(
                f"attack.opacity={self.opacity!r} is not allowed; expected 0 <= opacity <= 1"
            )
        stop = resolved_stop_distance(self)
        if isinstance(stop, float):
            require_positive(stop, "attack.stop_distance", allow_zero=True)

    def resolve(self, training_features: Callable[[], torch.Tensor]) -> FeatureCollisionSettings:
        """``stop_distance=auto`` as a number: ``min_training_feature_distance`` of the victim's
        training features (computed only when asked for)."""
        if resolved_stop_distance(self) != "auto":
            return self
        distance = min_training_feature_distance(training_features())
        log.info("stop_distance=auto: %.4f (minimum distance between training features)", distance)
        return replace(self, stop_distance=distance)


def resolved_stop_distance(attack: FeatureCollisionSettings) -> float | str | None:
    """``stop_distance`` as a number, ``"auto"``, or None."""
    value = attack.stop_distance
    if value is None or value == "auto":
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"attack.stop_distance={value!r} is not allowed; expected null, a number >= 0 "
            "(feature-space distance) or auto (the minimum pairwise distance between training "
            "features)"
        ) from None


def min_training_feature_distance(features: torch.Tensor) -> float:
    """The smallest distance between two distinct training points in feature space.

    The paper's stopping threshold (3 for its Inception-v3 features): a poison this close to its
    target is as close as any two training images are. Pairs at distance 0 (duplicates) are
    ignored.
    """
    from frogs.measures.feature_scale import nearest_neighbour_distances

    nearest = nearest_neighbour_distances(features)
    nearest = nearest[torch.isfinite(nearest)]
    if not len(nearest):
        raise ConfigError(
            "attack.stop_distance=auto needs two distinct training points in feature space"
        )
    return float(nearest.min())


@dataclass(frozen=True)
class CraftResult:
    """Poisons and how crafting went (distances in the clean feature space)."""

    poisons: torch.Tensor
    start_distance: torch.Tensor
    final_distance: torch.Tensor
    iters_run: int


def watermark(bases: torch.Tensor, target: torch.Tensor, opacity: float) -> torch.Tensor:
    """Blend the target into each base: ``b <- γ·t + (1-γ)·b`` (Sec. 4.2), before crafting."""
    if not 0.0 <= opacity <= 1.0:
        raise ConfigError(f"opacity={opacity!r} is not allowed; expected 0 <= opacity <= 1")
    return opacity * target.unsqueeze(0) + (1.0 - opacity) * bases


def proximal_step(x_hat: torch.Tensor, base: torch.Tensor, lr: torch.Tensor | float, beta: float):
    """Alg. 1 backward step: ``x = (x̂ + λβ b) / (1 + λβ)``.

    This is the proximal map of ``(β/2)‖x - b‖²`` with step λ: the paper's printed step, whose
    factor ½ relative to Eq. 1's ``β‖x - b‖²`` is absorbed into β.
    """
    return (x_hat + lr * beta * base) / (1 + lr * beta)


def _as_image_mask(flags: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-poison flags (N,) shaped to broadcast over images like ``like`` (N,C,H,W)."""
    return flags.view(-1, *([1] * (like.ndim - 1)))


def forward_step(
    x: torch.Tensor, grad: torch.Tensor, step_size: torch.Tensor | float, rule: str
) -> torch.Tensor:
    """Alg. 1 forward step ``x - λ∇``; ``rule="sign"`` steps ``λ·sign(∇)`` instead (PGD-style:
    every pixel moves by exactly λ, which suits an L∞ ball of a few /255)."""
    return x - step_size * (grad.sign() if rule == "sign" else grad)


def backward_step(
    x_hat: torch.Tensor,
    starts: torch.Tensor,
    step_size: torch.Tensor | float,
    beta: float,
    budget: Budget,
) -> torch.Tensor:
    """Alg. 1 backward step, then the budget.

    L2: the proximal step towards the start (weight β), then the L2 radius if one is set. L∞: the
    clip to the ε-ball replaces the proximal step (App. C; the authors' ``inf_norm`` branch).
    Pixels end in [0, 1] either way.
    """
    if budget.norm == "l2" and beta > 0:
        x_hat = proximal_step(x_hat, starts, step_size, beta)
    return budget.project(x_hat, starts)


def feature_collision(
    feature_fn: FeatureFn,
    target: torch.Tensor,
    bases: torch.Tensor,
    *,
    iters: int = 1000,
    lr: float = 0.01,
    beta: float = 0.25,
    budget: Budget | None = None,
    step: str = "gradient",
    stop_distance: float | None = None,
    lr_decay: bool = False,
    decay_factor: float = 0.5,
    optimize: bool = True,
    progress: bool = False,
    amp: bool = False,
) -> CraftResult:
    """Craft one poison per base whose features collide with the target's (Eq. 1, Alg. 1).

    ``target`` is one image (C,H,W), ``bases`` a batch (N,C,H,W) of crafting starts (already
    watermarked); each poison starts at its base. Per iteration: a forward step on
    ‖f(x) − f(t)‖² (``forward_step``), then the backward step and the budget (``backward_step``);
    the default budget is the unbounded L2 one, i.e. Algorithm 1 as printed. Pixels stay in
    [0, 1]. A poison whose feature distance falls below ``stop_distance`` stops moving; crafting
    ends when all have. With ``lr_decay`` a step that increases the Eq. 1 objective is rejected
    and that poison's step size multiplied by ``decay_factor``. ``optimize=False`` returns the
    bases unchanged (watermark only). ``amp`` (resolved by ``frogs.models.precision.resolve_amp``)
    runs ``feature_fn`` under bf16 autocast on channels-last images; pixels, steps and distances
    stay float32.
    """
    budget = budget or Budget("l2", None)
    if step not in ("gradient", "sign"):
        raise ConfigError(f"step={step!r} is not allowed; expected gradient or sign")
    bases = bases.detach()
    bases = channels_last(bases, amp)

    def features(x: torch.Tensor) -> torch.Tensor:
        if not amp:
            return feature_fn(x)
        with autocast(True, bases.device):
            return feature_fn(x).float()

    def distance_and_grad(
        x: torch.Tensor, with_grad: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        x = x.detach().requires_grad_(with_grad)
        with torch.set_grad_enabled(with_grad):
            diff = per_image(features(x) - target_features)
            loss = diff.pow(2).sum(1)
        if not with_grad:  # the last iteration's gradient is never used: skip its backward pass
            return loss, None, x
        (grad,) = torch.autograd.grad(loss.sum(), x)
        return loss.detach(), grad, x.detach()

    with torch.no_grad():
        target_features = features(target.unsqueeze(0)).detach()
    sq_dist, grad, x = distance_and_grad(bases, with_grad=optimize)
    start = sq_dist.sqrt()
    if not optimize:
        return CraftResult(bases.clone(), start, start, 0)

    # One step size for all poisons unless backtracking gives each its own (a plain float keeps
    # the elementwise steps as cheap as the bare loop's).
    step_size: torch.Tensor | float = (
        torch.full((len(bases),) + (1,) * (bases.ndim - 1), lr, device=bases.device)
        if lr_decay
        else lr
    )
    # Per-poison masks are needed only when poisons may stop or reject steps; plain Algorithm 1
    # moves every poison every iteration, so it skips the torch.where bookkeeping.
    masked = stop_distance is not None or lr_decay
    objective = sq_dist  # Eq. 1 objective; the β term is 0 at x = b
    active = torch.ones(len(bases), dtype=torch.bool, device=bases.device)
    # Finiteness is accumulated on the device and read back every `check_every` iterations (every
    # iteration on the CPU, where reading it costs nothing), so a GPU is never stalled on it.
    check_every = 1 if bases.device.type == "cpu" else 32
    finite = torch.ones((), dtype=torch.bool, device=bases.device)
    iters_run = 0
    for _ in tqdm(range(iters), desc="craft", leave=False, disable=not progress):
        if stop_distance is not None:
            active &= sq_dist.sqrt() >= stop_distance
            if not bool(active.any()):
                break
        iters_run += 1
        with torch.no_grad():
            x_hat = forward_step(x, grad, step_size, step)  # Alg. 1 forward step
            candidate = backward_step(x_hat, bases, step_size, beta, budget)
        new_sq_dist, new_grad, candidate = distance_and_grad(candidate, iters_run < iters)
        finite &= torch.isfinite(new_sq_dist).all()
        if (iters_run % check_every == 0 or iters_run == iters) and not bool(finite):
            raise NumericalError(
                f"feature distance became non-finite by crafting iteration {iters_run}"
            )
        if not masked:
            x, grad, sq_dist = candidate, new_grad, new_sq_dist
            continue
        move = active
        if lr_decay:
            new_objective = new_sq_dist + beta * per_image(candidate - bases).pow(2).sum(1)
            better = new_objective <= objective
            step_size = torch.where(
                _as_image_mask(move & ~better, step_size), step_size * decay_factor, step_size
            )
            move = move & better
            objective = torch.where(move, new_objective, objective)
        mask = _as_image_mask(move, x)
        x = torch.where(mask, candidate, x)
        if new_grad is not None:
            grad = torch.where(mask, new_grad, grad)
        sq_dist = torch.where(move, new_sq_dist, sq_dist)
    return CraftResult(x.detach(), start, sq_dist.sqrt(), iters_run)


def single_base_target_noise(
    settings: FeatureCollisionSettings, count: int, feature_dim: int
) -> torch.Tensor | None:
    """The official single-base arm's per-poison noise on the target's features (None: none).

    Drawn one poison at a time from the trial's crafting stream, so the first N rows are the
    same whatever the number of poisons (poison reuse across counts relies on it).
    """
    if settings.multi_base or settings.target_noise == 0:
        return None
    return torch.stack([torch.randn(feature_dim) * settings.target_noise for _ in range(count)])


@ATTACKS.register("feature_collision", FeatureCollisionSettings)
def craft_feature_collision(
    settings: FeatureCollisionSettings, problem: CraftingProblem
) -> Crafted:
    """Watermark the bases, craft within the budget, and make 8-bit poisons.

    The crafting start is the watermarked base, itself an 8-bit image when ``quantize`` is on.
    ``recipe=algorithm1`` runs Alg. 1 on [0, 1] pixels with β = β0·D_feat²/D_in² (D_feat from
    the clean extractor); ``recipe=authors`` the official transfer code's loop on [0, 255] pixels
    (``frogs.attacks.authors``); ``recipe=authors_e2e`` the official end-to-end code's Adam loop
    (``frogs.attacks.authors_e2e``), whose unclipped result is then clipped to [0, 1] (and made
    8-bit): ``feat_dist_after_unclipped`` is its distance before that. ``settings.stop_distance``
    is a number or None here (``resolve`` turns ``auto`` into one per job). With ``quantize`` the
    poisons are rounded to 8 bits inside the budget, and their final feature distance is that of
    the rounded images. Feature collision crafts in the clean model's feature space
    (``problem.victim_features``).
    """
    feature_fn, target, bases = problem.victim_features, problem.target, problem.bases
    budget = problem.budget
    stop_distance = resolved_stop_distance(settings)
    if stop_distance == "auto":
        raise ConfigError("attack.stop_distance=auto must be resolved per job (settings.resolve)")
    starts = watermark(bases, target, settings.opacity)
    if settings.quantize:
        starts = quantize(starts)
    input_dim = target.numel()
    with torch.no_grad():
        feature_dim = feature_fn(target.unsqueeze(0)).flatten(1).shape[1]
    per_poison: dict[str, torch.Tensor] = {}
    if settings.recipe == "authors_e2e" and settings.optimize:
        from frogs.attacks.authors_e2e import authors_e2e_feature_collision

        beta = settings.beta0  # the code's coeff_sim_inp, on [0, 255] pixels, not scaled
        loop = authors_e2e_feature_collision(
            feature_fn,
            target,
            starts,
            iters=settings.iters,
            lr=settings.lr,
            beta=beta,
            target_noise=single_base_target_noise(settings, len(starts), feature_dim),
            budget=budget,
            progress=problem.progress,
        )
        result = CraftResult(
            loop.poisons.clamp(0.0, 1.0),
            feature_distances(feature_fn, target, starts),  # to the target, without the noise
            feature_distances(feature_fn, target, loop.poisons.clamp(0.0, 1.0)),
            int(loop.iterations.max()),
        )
        per_poison = {
            "feat_dist_after_unclipped": feature_distances(feature_fn, target, loop.poisons),
            "craft_rejected_steps": loop.rejected.double(),
            "craft_stopped_early": loop.stopped_early.double(),
            "craft_iters_per_poison": loop.iterations.double(),
        }
    elif settings.recipe == "authors" and settings.optimize:
        beta = dimension_scaled_beta(settings.beta0, feature_dim, input_dim)  # on [0, 255] pixels
        poisons, start, final, iters_run = authors_feature_collision(
            feature_fn,
            target,
            starts,
            beta=beta,
            iters=settings.iters,
            lr=settings.lr,
            threshold=stop_distance,
            budget=budget,
            progress=problem.progress,
        )
        result = CraftResult(poisons, start, final, iters_run)
    else:
        uses_beta = settings.constraint == "l2" and settings.optimize
        beta = dimension_scaled_beta(settings.beta0, feature_dim, input_dim) if uses_beta else None
        result = feature_collision(
            feature_fn,
            target,
            starts,
            iters=settings.iters,
            lr=settings.lr,
            beta=beta or 0.0,
            budget=budget,
            step=settings.step,
            stop_distance=stop_distance,
            lr_decay=settings.lr_decay,
            optimize=settings.optimize,
            progress=problem.progress,
            amp=problem.amp,
        )
    poisons, final = result.poisons, result.final_distance
    if settings.quantize and settings.optimize:
        poisons = quantize_within(poisons, starts, budget)
        final = feature_distances(feature_fn, target, poisons)
    # the official end-to-end loop's own diagnostics: null for the other recipes
    loop_only = dict.fromkeys(AUTHORS_E2E_METRICS) if not per_poison else {}
    return Crafted(
        poisons,
        starts,
        {
            "beta": beta,
            "stop_distance": stop_distance,
            "craft_iters_run": result.iters_run,
            **loop_only,
        },
        per_poison={
            "feat_dist_before": result.start_distance,
            "feat_dist_after": final,
            **per_poison,
        },
    )
