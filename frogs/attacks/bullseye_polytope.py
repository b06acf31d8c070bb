"""Bullseye Polytope (Aghakhani et al., EuroS&P 2021): ``attack=bullseye_polytope``.

Convex Polytope with the coefficients fixed at 1/k: the poisons' mean feature is pulled onto the
target's ("bullseye"), for every extractor of the ensemble,

    min over x   Σ_i ‖φ_i(t) − (1/k) Σ_j φ_i(x_j)‖ / ‖φ_i(t)‖  /  m,

with every x_j in the budget around its base. No coefficient fitting, so each iteration costs
one forward/backward pass of the poisons per extractor (cheaper than CP). The multi-target
variant (one poison set for several views of a target) does not fit frogs' one-target trials
and is not built.
"""

from __future__ import annotations

from dataclasses import dataclass

from frogs.attacks import ATTACKS, Crafted, CraftingProblem
from frogs.attacks.convex_polytope import PolytopeSettings, run_polytope


@dataclass(frozen=True)
class BullseyePolytopeSettings(PolytopeSettings):
    """Bullseye Polytope's knobs: those of every polytope attack (``PolytopeSettings``)."""

    name: str = "bullseye_polytope"
    iters: int = 800


@ATTACKS.register("bullseye_polytope", BullseyePolytopeSettings)
def craft_bullseye_polytope(
    settings: BullseyePolytopeSettings, problem: CraftingProblem
) -> Crafted:
    """Bullseye Polytope poisons for one target (see the module docstring)."""
    return run_polytope(settings, problem, bullseye=True)
