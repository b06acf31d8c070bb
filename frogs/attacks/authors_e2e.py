"""The official end-to-end crafting loop (``recipe=authors_e2e``), in its own [0, 255] units.

The authors' end-to-end code (kept in neeharperi/DeepKNNDefense,
``FeatureCollision_AlexNet/poisoin-end-to-end-training-CIFAR10-master/``,
``utils_cifar10_for_multiPoison.py``: ``make_instance``, ``do_the_optimization``,
``adjust_moving_back``) crafts each poison with a fresh TF1 ``AdamOptimizer`` on raw [0, 255]
pixels. Per poison, starting at the watermarked base ``b_w``, with λ = 0.01 and β = 0.1
(``coeff_sim_inp``, not dimension-scaled), for at most 12,000 iterations:

1. ``old = ‖f(x) − f(t)‖`` (not squared; the total-variation weight is 0);
2. one Adam step on that norm at the current λ gives ``x'`` (β1 0.9, β2 0.999, ε 1e-8 added to
   √v, the bias correction folded into the step size: TF1's update);
3. stop and return ``x'`` when ``‖x' − x‖ / ‖x'‖ < 1e-5``;
4. ``new = ‖f(x') − f(t)‖``; the candidate is the prox ``(βλ·b_w + x') / (βλ + 1)``;
5. if ``new ≥ old``: λ ← 0.2·λ and ``x`` stays (Adam's moments and step count keep the rejected
   step); else ``x`` ← candidate.

The code never clips pixels (its clip op is built and never run), so neither does this loop; the
caller turns the result into an 8-bit image in [0, 1] and measures what that changes. With one
base reused for every poison (``MultiBase=False``) the code adds Gaussian noise (std 0.05) to the
target's features for each poison: ``target_noise`` carries that noise, one row per poison.

Poisons are crafted as one batch, each with its own Adam moments, step count, λ and stop flag,
so the result equals running the loop once per poison (tests/test_authors_e2e.py transcribes
the loop for one poison and compares).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from frogs.attacks.budget import Budget, per_image
from frogs.errors import NumericalError

PIXEL_SCALE = 255.0
LEARNING_RATE = 0.01  # in [0, 255] pixels per Adam step (make_instance)
BETA = 0.1  # coeff_sim_inp: the prox weight toward the watermarked base, not dimension-scaled
MAX_ITERS = 12_000  # MaxIter
DECAY = 0.2  # decayCoef: λ's factor after a rejected step
STOPPING_TOLERANCE = 1e-5  # stopping_tol on the relative change of the image
ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON = 0.9, 0.999, 1e-8  # TF1 AdamOptimizer defaults


@dataclass(frozen=True)
class AuthorsE2EResult:
    """The loop's output in [0, 1] pixel units (not clipped: the official code never clips),
    with each poison's feature distances, iterations run, rejected steps and early stop."""

    poisons: torch.Tensor
    start_distance: torch.Tensor
    final_distance: torch.Tensor
    iterations: torch.Tensor
    rejected: torch.Tensor
    stopped_early: torch.Tensor


def _per_poison(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-poison values (N,) shaped to broadcast over images like ``like`` (N,C,H,W)."""
    return values.view(-1, *([1] * (like.ndim - 1)))


def authors_e2e_feature_collision(
    feature_fn: Callable[[torch.Tensor], torch.Tensor],
    target: torch.Tensor,
    starts: torch.Tensor,
    *,
    iters: int = MAX_ITERS,
    lr: float = LEARNING_RATE,
    beta: float = BETA,
    target_noise: torch.Tensor | None = None,
    budget: Budget | None = None,
    progress: bool = False,
) -> AuthorsE2EResult:
    """Run the official end-to-end loop on every crafting start at once.

    ``target`` (C,H,W) and ``starts`` (N,C,H,W, the watermarked bases) are [0, 1] images;
    ``feature_fn`` takes [0, 1] images. ``lr`` and ``beta`` are in the code's [0, 255] units.
    ``target_noise`` (N, D_feat) is added to the target's features, one row per poison.
    ``budget`` (None, or one without a radius: the code's unbounded, unclipped loop) projects each
    accepted candidate into a ball around its start, for users who want the loop inside a
    perceptibility budget.
    """
    start_255 = starts.detach() * PIXEL_SCALE
    count = len(start_255)
    ball = budget if budget is not None and budget.eps is not None else None

    def into_ball(x255: torch.Tensor) -> torch.Tensor:
        """``x255`` projected into the budget around its start (unchanged without a ball)."""
        if ball is None:
            return x255
        return ball.project(x255 / PIXEL_SCALE, starts) * PIXEL_SCALE

    def features(x255: torch.Tensor) -> torch.Tensor:
        return feature_fn(x255 / PIXEL_SCALE).reshape(len(x255), -1)

    with torch.no_grad():
        goal = features(target.detach().unsqueeze(0) * PIXEL_SCALE).expand(count, -1)
        if target_noise is not None:
            goal = goal + target_noise.to(goal)

    def distance(x255: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return (features(x255) - goal).norm(dim=1)

    def distance_and_gradient(x255: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            x255 = x255.detach().requires_grad_(True)
            norms = (features(x255) - goal).norm(dim=1)
            (grad,) = torch.autograd.grad(norms.sum(), x255)
        return norms.detach(), grad

    x = start_255.clone()
    first_moment, second_moment = torch.zeros_like(x), torch.zeros_like(x)
    steps = torch.zeros(count, dtype=x.dtype, device=x.device)  # Adam's t, one per poison
    rate = torch.full((count,), float(lr), dtype=x.dtype, device=x.device)
    active = torch.ones(count, dtype=torch.bool, device=x.device)
    iterations = torch.zeros(count, dtype=torch.long, device=x.device)
    rejected = torch.zeros(count, dtype=torch.long, device=x.device)
    stopped_early = torch.zeros(count, dtype=torch.bool, device=x.device)
    start_distance = distance(x)
    for _ in tqdm(range(iters), desc="craft (authors e2e)", leave=False, disable=not progress):
        old, grad = distance_and_gradient(x)
        with torch.no_grad():
            moving = _per_poison(active, x)
            iterations += active.long()
            steps = torch.where(active, steps + 1, steps)
            first_moment = torch.where(
                moving, ADAM_BETA1 * first_moment + (1 - ADAM_BETA1) * grad, first_moment
            )
            second_moment = torch.where(
                moving, ADAM_BETA2 * second_moment + (1 - ADAM_BETA2) * grad * grad, second_moment
            )
            step_size = rate * torch.sqrt(1 - ADAM_BETA2**steps) / (1 - ADAM_BETA1**steps)
            stepped = x - _per_poison(step_size, x) * first_moment / (
                second_moment.sqrt() + ADAM_EPSILON
            )
            relative_change = per_image(stepped - x).norm(dim=1) / per_image(stepped).norm(dim=1)
            stop = active & (relative_change < STOPPING_TOLERANCE)
            # a stopping poison returns the Adam iterate itself, as the code does
            x = torch.where(_per_poison(stop, x), into_ball(stepped), x)
            stopped_early |= stop
            active &= ~stop
            if not bool(active.any()):
                break
            new = distance(stepped)
            if not bool(torch.isfinite(new[active]).all()):
                raise NumericalError("feature distance became non-finite while crafting")
            scaled = _per_poison(beta * rate, x)
            candidate = into_ball((scaled * start_255 + stepped) / (scaled + 1))
            reject = active & (new >= old)
            accept = active & ~reject
            rate = torch.where(reject, rate * DECAY, rate)
            rejected += reject.long()
            x = torch.where(_per_poison(accept, x), candidate, x)
    final_distance = distance(x)
    return AuthorsE2EResult(
        x / PIXEL_SCALE, start_distance, final_distance, iterations, rejected, stopped_early
    )
