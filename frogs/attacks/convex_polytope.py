"""Convex Polytope (Zhu et al., ICML 2019): ``attack=convex_polytope``.

The poisons' features are made to enclose the target's: for every extractor φ_i of an ensemble,
the target's feature should be a convex combination of the poisons' features,

    min over x, c   Σ_i ½‖φ_i(t) − Σ_j c_ij φ_i(x_j)‖² / ‖φ_i(t)‖²  /  m,
    c_i on the probability simplex, every x_j in the budget around its base b_j.

Each iteration first refits the coefficients of every extractor (projected gradient steps on the
simplex, step 1/L with L the largest eigenvalue of the Gram matrix), then takes one Adam step on
the poisons and projects them back into the budget. ``dropout`` applies dropout to the poisons'
features while crafting, the paper's way of making poisons transfer to unseen networks.
Bullseye Polytope (``frogs.attacks.bullseye_polytope``) is the same loop with the coefficients
fixed at 1/k.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from frogs.attacks import ATTACKS, Crafted, CraftingProblem, FeatureFn, feature_distances
from frogs.attacks.budget import quantize, quantize_within
from frogs.config.settings import CLEAN, AttackSettings, JobSettings, require_positive
from frogs.errors import ConfigError, NumericalError
from frogs.models.precision import autocast


@dataclass(frozen=True)
class PolytopeSettings(AttackSettings):
    """What Convex and Bullseye Polytope share.

    ``lr`` is Adam's step size on [0, 1] pixels; ``ensemble`` lists the extractors the poisons are
    crafted against: ``clean`` (the victim's clean model) and other model names from the
    ``model=`` group (each trained like the clean model, on the same data, and cached) or paths to
    ``frogs pretrain`` checkpoints. ``dropout`` is the probability of dropping a feature of a
    poison during crafting (0: off).
    """

    num_poisons: int = 5
    iters: int = 4000
    lr: float = 0.04
    ensemble: list[str] = field(default_factory=lambda: [CLEAN])
    dropout: float = 0.0

    min_poisons = 2
    independent_poisons = False  # the coefficients couple every poison of the polytope

    def check(self, job: JobSettings) -> None:
        super().check(job)
        require_positive(self.lr, "attack.lr")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(
                f"attack.dropout={self.dropout!r} is not allowed; expected 0 <= dropout < 1"
            )
        if not self.ensemble:
            raise ConfigError("attack.ensemble=[] is not allowed; expected at least one model")
        for entry in self.ensemble:
            check_ensemble_entry(entry)

    def crafting_extractors(self) -> list[str]:
        return list(self.ensemble)


def check_ensemble_entry(entry: str) -> None:
    """An ensemble entry is ``clean``, a registered model name, or an existing checkpoint file."""
    from pathlib import Path

    from frogs.models.architectures import MODELS

    if entry == CLEAN or entry in MODELS or Path(entry).expanduser().is_file():
        return
    raise ConfigError(
        f"attack.ensemble entry {entry!r} is not allowed; expected clean, a model name "
        f"({', '.join(MODELS.names())}) or the path of a frogs pretrain checkpoint"
    )


@dataclass(frozen=True)
class ConvexPolytopeSettings(PolytopeSettings):
    """Convex Polytope's knobs: ``coefficient_steps`` simplex steps per iteration."""

    name: str = "convex_polytope"
    coefficient_steps: int = 5

    def check(self, job: JobSettings) -> None:
        super().check(job)
        require_positive(self.coefficient_steps, "attack.coefficient_steps")


def project_to_simplex(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each row of ``v`` onto the probability simplex (sort-based
    algorithm of Held et al. 1974 / Duchi et al. 2008)."""
    u, _ = torch.sort(v, dim=-1, descending=True)
    cumulative = u.cumsum(-1) - 1
    index = torch.arange(1, v.shape[-1] + 1, device=v.device, dtype=v.dtype)
    rho = ((u - cumulative / index) > 0).sum(-1, keepdim=True)
    theta = cumulative.gather(-1, rho - 1) / rho.to(v.dtype)
    return (v - theta).clamp_min(0)


def refit_coefficients(
    coefficients: torch.Tensor,
    poison_features: torch.Tensor,
    target_feature: torch.Tensor,
    steps: int,
) -> torch.Tensor:
    """``steps`` projected-gradient steps on min_c ½‖t − cᵀΦ‖² over the simplex (step 1/L)."""
    gram = poison_features @ poison_features.T
    step = 1.0 / torch.linalg.eigvalsh(gram).max().clamp_min(1e-12)
    for _ in range(steps):
        grad = gram @ coefficients - poison_features @ target_feature
        coefficients = project_to_simplex(coefficients - step * grad)
    return coefficients


def polytope_loss(
    poison_features: list[torch.Tensor],
    target_features: list[torch.Tensor],
    coefficients: list[torch.Tensor],
    bullseye: bool,
) -> torch.Tensor:
    """The attack's objective, averaged over the ensemble.

    Convex Polytope: ½‖φ(t) − cᵀφ(X)‖² / ‖φ(t)‖². Bullseye Polytope: ‖φ(t) − mean φ(X)‖ / ‖φ(t)‖.
    """
    total = torch.zeros((), device=poison_features[0].device, dtype=poison_features[0].dtype)
    for phi, target, c in zip(poison_features, target_features, coefficients, strict=True):
        residual = target - c @ phi
        if bullseye:
            total = total + residual.norm() / target.norm()
        else:
            total = total + 0.5 * residual.pow(2).sum() / target.pow(2).sum()
    return total / len(poison_features)


def craft_polytope(
    extractors: list[FeatureFn],
    target: torch.Tensor,
    bases: torch.Tensor,
    budget,
    *,
    iters: int,
    lr: float,
    dropout: float = 0.0,
    bullseye: bool = False,
    coefficient_steps: int = 5,
    progress: bool = False,
    amp: bool = False,
) -> tuple[torch.Tensor, list[torch.Tensor], list[float]]:
    """Craft poisons from ``bases`` (N,C,H,W) around ``target`` (C,H,W) for every extractor.

    Returns the poisons (within ``budget`` of the bases, [0, 1] pixels, not yet 8-bit), the final
    coefficients per extractor and the objective before and after.
    """

    def features(fn: FeatureFn, x: torch.Tensor) -> torch.Tensor:
        with autocast(amp, x.device):
            return fn(x).flatten(1).to(x.dtype)  # bf16 under autocast -> the pixels dtype

    with torch.no_grad():
        target_features = [features(fn, target.unsqueeze(0))[0] for fn in extractors]
    count = len(bases)
    coefficients = [
        torch.full((count,), 1.0 / count, device=bases.device, dtype=bases.dtype)
        for _ in extractors
    ]
    poisons = bases.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([poisons], lr=lr, betas=(0.9, 0.999))

    def objective(with_dropout: bool) -> torch.Tensor:
        phis = [features(fn, poisons) for fn in extractors]
        if with_dropout and dropout > 0:
            phis = [F.dropout(phi, dropout, training=True) for phi in phis]
        return polytope_loss(phis, target_features, coefficients, bullseye), phis

    with torch.no_grad():
        start_loss = float(objective(False)[0])
    for _ in tqdm(range(iters), desc="craft", leave=False, disable=not progress):
        if not bullseye:
            with torch.no_grad():
                phis = [features(fn, poisons) for fn in extractors]
                coefficients = [
                    refit_coefficients(c, phi, t, coefficient_steps)
                    for c, phi, t in zip(coefficients, phis, target_features, strict=True)
                ]
        loss, _ = objective(True)
        if not bool(torch.isfinite(loss)):
            raise NumericalError("the polytope objective became non-finite while crafting")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            poisons.copy_(budget.project(poisons, bases))
    with torch.no_grad():
        final_loss = float(objective(False)[0])
    return poisons.detach(), [c.detach() for c in coefficients], [start_loss, final_loss]


def run_polytope(
    settings: PolytopeSettings,
    problem: CraftingProblem,
    bullseye: bool,
    coefficient_steps: int = 0,
) -> Crafted:
    """Craft, make 8-bit poisons inside the budget, and measure them (shared by CP and BP;
    Bullseye keeps its coefficients at 1/k, so it takes no ``coefficient_steps``)."""
    bases, target = problem.bases, problem.target
    # The crafting start is the base as an 8-bit image (unchanged for 8-bit datasets), so that
    # the 8-bit poisons can lie within the budget of it.
    starts = quantize(bases) if settings.quantize else bases
    poisons, coefficients, (loss_before, loss_after) = craft_polytope(
        problem.extractors,
        target,
        starts,
        problem.budget,
        iters=settings.iters,
        lr=settings.lr,
        dropout=settings.dropout,
        bullseye=bullseye,
        coefficient_steps=coefficient_steps,
        progress=problem.progress,
        amp=problem.amp,
    )
    if settings.quantize:
        poisons = quantize_within(poisons, starts, problem.budget)
    clean = problem.victim_features
    before = feature_distances(clean, target, starts)
    after = feature_distances(clean, target, poisons)
    with torch.no_grad():
        t = clean(target.unsqueeze(0)).flatten(1)[0]
        phi = clean(poisons).flatten(1)
        c = coefficients[0]  # the first ensemble member's (the clean model's by default)
        combination = (c @ phi) if not bullseye else phi.mean(0)
        polytope_distance = float((t - combination).norm())
    return Crafted(
        poisons,
        starts,
        {
            "feat_dist_before": float(before.mean()),
            "feat_dist_after": float(after.mean()),
            "feat_dist_after_max": float(after.max()),
            "polytope_dist_after": polytope_distance,
            "polytope_loss_before": loss_before,
            "polytope_loss_after": loss_after,
            "coefficients": [float(v) for v in c],
            "craft_iters_run": settings.iters,
        },
    )


@ATTACKS.register("convex_polytope", ConvexPolytopeSettings)
def craft_convex_polytope(settings: ConvexPolytopeSettings, problem: CraftingProblem) -> Crafted:
    """Convex Polytope poisons for one target (see the module docstring)."""
    return run_polytope(
        settings, problem, bullseye=False, coefficient_steps=settings.coefficient_steps
    )
