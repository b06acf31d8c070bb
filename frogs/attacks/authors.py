"""The official code's crafting loop (``recipe=authors``), in its own [0, 255] pixel units.

The authors' ``do_optimization`` (ashafahi/inceptionv3-transferLearn-poison,
``util_one_shot_kill_attack.py``) differs from Algorithm 1 as printed in ways that matter:

- pixels are in [0, 255], so its β0 = 0.25 is 255² times stronger than the same number on
  [0, 1] pixels (``equivalent_beta0_01``), and its step size starts at 500·255;
- the forward step descends the *non-squared* ‖f(x) − f(t)‖, and the objective it monitors is
  ‖f(x) − f(t)‖ + β‖x − b‖, also non-squared;
- backtracking: the objective of each new iterate is compared with the mean of the last 40
  objectives; if it is not lower, the step size is halved and the iterate thrown away. The
  code's test is ``iter % M/2 == 0``, which Python reads as ``(iter % M) / 2 == 0``, so the
  comparison only happens every 40th iteration; frogs reproduces that as written;
- it stops when the objective falls to the threshold (2.9) or the relative change of the image
  is below 1e-10.

Poisons are crafted as a batch; each keeps its own step size, history and stopping state, so the
result equals running the loop once per poison.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from frogs.attacks.budget import Budget, per_image


def dimension_scaled_beta(beta0: float, feature_dim: int, input_dim: int) -> float:
    """β = β0 · D_feat² / D_input² (Sec. 4.1), so one β0 serves networks of any size (the paper's
    rule and the official code's; frogs' own Algorithm 1 uses it too)."""
    return beta0 * feature_dim**2 / input_dim**2


PIXEL_SCALE = 255.0
INITIAL_STEP = 500.0 * PIXEL_SCALE
WINDOW = 40
DECAY = 0.5
RELATIVE_TOLERANCE = 1e-10


# The code's ``coeff_sim_inp = β0 · (D_feat / D_in)²`` is Sec. 4.1's dimension scaling; only its
# units differ (β0 and β on [0, 255] pixels here).
authors_beta = dimension_scaled_beta


def equivalent_beta0_01(beta0_255: float) -> float:
    """The β0 that gives the same proximal pull on [0, 1] pixels (0.25 -> 0.25·255² = 16256)."""
    return beta0_255 * PIXEL_SCALE**2


def equivalent_lr_01(lr_255: float) -> float:
    """The gradient step on [0, 1] pixels equal to step ``lr_255`` on [0, 255] pixels.

    x₂₅₅ = 255·x₀₁ and ∇₂₅₅ = ∇₀₁ / 255, so x₀₁ ← x₀₁ − (lr₂₅₅ / 255²)·∇₀₁.
    """
    return lr_255 / PIXEL_SCALE**2


def authors_feature_collision(
    feature_fn: Callable[[torch.Tensor], torch.Tensor],
    target: torch.Tensor,
    bases: torch.Tensor,
    *,
    beta: float,
    iters: int,
    lr: float = INITIAL_STEP,
    threshold: float | None = 2.9,
    budget: Budget | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Run the official loop on [0, 1] images; return (poisons in [0, 1], start and final feature
    distances, iterations run).

    ``beta`` and ``lr`` are in the code's [0, 255] units (``authors_beta``, ``INITIAL_STEP``).
    ``threshold`` is the objective value that stops a poison (None: never). A ``budget`` (in
    [0, 1] units) is applied after the code's backward step, for users who want both.
    """
    base = bases.detach() * PIXEL_SCALE

    def features(x255: torch.Tensor) -> torch.Tensor:
        return feature_fn(x255 / PIXEL_SCALE).reshape(len(x255), -1)

    with torch.no_grad():
        target_features = features(target.unsqueeze(0) * PIXEL_SCALE)

    def feature_distance(x255: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return (features(x255) - target_features).norm(dim=1)

    def gradient(x255: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            x255 = x255.detach().requires_grad_(True)
            loss = (features(x255) - target_features).norm(dim=1).sum()
            (grad,) = torch.autograd.grad(loss, x255)
        return grad

    def objective(x255: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
        return distance + beta * per_image(x255 - base).norm(dim=1)

    image_shape = (-1, *([1] * (base.ndim - 1)))
    x = base.clone()
    distance = feature_distance(x)
    start_distance = distance.clone()
    current = objective(x, distance)
    history = [current]
    step = torch.full((len(base),), float(lr), dtype=base.dtype, device=base.device)
    active = torch.ones(len(base), dtype=torch.bool, device=base.device)
    iters_run = 0
    for it in tqdm(range(iters), desc="craft (authors)", leave=False, disable=not progress):
        with torch.no_grad():
            lam = step.view(image_shape)
            x_new = x - lam * gradient(x)
            x_new = (x_new + lam * beta * base) / (1 + lam * beta)
            x_new = x_new.clamp(0.0, PIXEL_SCALE)
            if budget is not None:
                x_new = budget.project(x_new / PIXEL_SCALE, base / PIXEL_SCALE) * PIXEL_SCALE
            change, size = per_image(x_new - x).norm(dim=1), per_image(x_new).norm(dim=1)
            relative_change = change / size.clamp_min(1e-30)
            stopped = relative_change < RELATIVE_TOLERANCE
            if threshold is not None:
                stopped |= current <= threshold
            active &= ~stopped
            if not bool(active.any()):
                break
            iters_run += 1
            new_distance = feature_distance(x_new)
            new_objective = objective(x_new, new_distance)
            mean_recent = torch.stack(history).mean(0)
            reject = (new_objective >= mean_recent) & (it % WINDOW == 0)
            step = torch.where(active & reject, step * DECAY, step)
            accept = active & ~reject
            x = torch.where(accept.view(image_shape), x_new, x)
            distance = torch.where(accept, new_distance, distance)
            current = torch.where(accept, new_objective, current)
            # the code appends every new objective, accepted or not, for the poisons still running
            history.append(torch.where(active, new_objective, history[-1]))
            history = history[-WINDOW:]
    return x / PIXEL_SCALE, start_distance, distance, iters_run
