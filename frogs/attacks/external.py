"""Poisons made by another tool: ``attack=external attack.path=DIR``.

``DIR/<trial index>/`` holds one trial in the poisoning-benchmark's layout (``poisons.pickle``,
``base_indices.pickle``, ``target.pickle``; ``frogs.interchange.benchmark``), read through the
restricted unpickler. The folder fixes the trial's target and bases
(``frogs.interchange.fixed_trials``): the bases are training images and the poisons replace them.
The poisons then go through frogs' defenses, victims, controls and perceptibility like crafted ones;
the record says where they came from (``poisons_source``, ``poisons_sha256`` of the three files) and
whether every poison lies within the benchmark's check of its base
(``poisons_within_benchmark_linf``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from frogs.attacks import ATTACKS, Crafted, CraftingProblem, feature_distances
from frogs.config.settings import AttackSettings, JobSettings
from frogs.errors import ConfigError
from frogs.interchange.benchmark import BENCHMARK_LINF_LIMIT_255, linf_255, read_trial_poisons

log = logging.getLogger(__name__)

#: The record fields only ``attack=external`` measures (null for crafted poisons).
EXTERNAL_METRICS = ("poisons_source", "poisons_sha256", "poisons_within_benchmark_linf")


@dataclass(frozen=True)
class ExternalSettings(AttackSettings):
    """Where the poisons are: ``path``, a folder of trial folders named by trial index.

    ``num_poisons`` must equal the poisons of every folder (checked before any model loads);
    the budget knobs (``constraint``, ``eps``) are not applied, only measured: frogs records
    each poison's distance to its base as for any attack.
    """

    name: str = "external"
    path: str | None = None

    independent_poisons: ClassVar[bool] = False
    cacheable: ClassVar[bool] = False

    def check(self, job: JobSettings) -> None:
        super().check(job)
        if not self.path:
            raise ConfigError(
                "attack=external needs attack.path=DIR, a folder of poisoning-benchmark trial "
                "folders named 0, 1, ..."
            )
        folder = Path(self.path).expanduser()
        if not folder.is_dir():
            raise ConfigError(
                f"attack.path={self.path!r} is not allowed: no such folder; expected a folder of "
                "trial folders (DIR/0/poisons.pickle, ...)"
            )


@ATTACKS.register("external", ExternalSettings)
def load_external(settings: ExternalSettings, problem: CraftingProblem) -> Crafted:
    """The trial's poisons as the files hold them; their starts are the bases they replace."""
    folder = Path(settings.path).expanduser() / str(problem.trial_index)
    trial = read_trial_poisons(folder)
    poisons = trial.poisons.to(problem.device)
    if poisons.shape != problem.bases.shape:
        raise ConfigError(
            f"{folder}: poisons of shape {tuple(poisons.shape)} do not fit their bases "
            f"{tuple(problem.bases.shape)}"
        )
    worst = float(linf_255(poisons, problem.bases).max())
    if worst > BENCHMARK_LINF_LIMIT_255:
        log.warning(
            "%s: a poison lies %.1f/255 from its base (L-inf), beyond the benchmark's %d/255",
            folder,
            worst,
            BENCHMARK_LINF_LIMIT_255,
        )
    before = feature_distances(problem.victim_features, problem.target, problem.bases)
    after = feature_distances(problem.victim_features, problem.target, poisons)
    return Crafted(
        poisons,
        problem.bases.clone(),
        {
            "poisons_source": str(folder),
            "poisons_sha256": trial.sha256,
            "poisons_within_benchmark_linf": worst <= BENCHMARK_LINF_LIMIT_255,
        },
        {"feat_dist_before": before, "feat_dist_after": after},
    )
