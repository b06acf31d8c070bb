"""One trial, top to bottom: its plan (``Trials.plan``: target, victim, bases) -> craft
(``frogs.attacks``) -> defend (``frogs.defenses``) -> retrain (``frogs.victims``) -> evaluate
(``frogs.experiment.evaluate``); ``run_trial`` returns the outcome fields of its record."""

from __future__ import annotations

import functools
import inspect
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from frogs.attacks import ATTACKS, Crafted, CraftingProblem, attack_budget
from frogs.attacks.external import EXTERNAL_METRICS
from frogs.config.settings import DefenseSettings
from frogs.data.poisoned_set import PoisonedSet
from frogs.defenses import DEFENSES, Filtered, score
from frogs.errors import NumericalError
from frogs.experiment.evaluate import evaluate
from frogs.experiment.job import Crafting, Job, TrialPlan, crafted_count
from frogs.experiment.seeds import stream_seed
from frogs.models.train import seeded
from frogs.store.identity import cache_key, stable_hash
from frogs.store.saving import save_benchmark_poisons, save_trial_features, save_trial_poisons
from frogs.victims.evaluator import Evaluator

log = logging.getLogger(__name__)


#: Prefix of the per-poison metrics in a cached poison set (``Crafted.per_poison``).
PER_POISON = "per_poison."


def craft(crafting: Crafting, plan: TrialPlan) -> tuple[Crafted, bool]:
    """Stage 1: the attack's poisons for the plan's bases; returns the poisons the trial uses
    and whether they were reused (crafted earlier, by this job or another, and cached).

    With ``attack.pool`` the attack crafts that many poisons (keyed as a job with
    ``num_poisons=pool`` would be) and the trial uses the first ``num_poisons``.
    """
    attack, task, device = crafting.attack, plan.victim.task, crafting.device
    whole_set = replace(attack, num_poisons=crafted_count(attack), pool=None)
    problem = CraftingProblem(
        target=plan.target_image.to(device),
        bases=plan.crafted_base_images.to(device),
        target_label=task.target_row,
        base_label=task.base_row,
        extractors=crafting.extractors,
        victim_features=crafting.victim_features,
        budget=attack_budget(attack),
        device=device,
        progress=crafting.progress,
        amp=crafting.amp,
        trial_index=plan.index,
    )
    key = cache_key(
        attack=whole_set,
        clean_model=crafting.clean_model,
        ensemble_models=crafting.ensemble_models,
        data=crafting.data,
        target=plan.target.index,
        bases=plan.crafted_bases.tolist(),
        bases_split=plan.base_split,
        pixels=[problem.target, problem.bases],
        stream=[crafting.seed, plan.index],
        device=device.type,
        amp=crafting.amp,
        code=crafting_code_fingerprint(ATTACKS.get(attack.name)),
    )

    built: list[bool] = []

    def build() -> dict[str, torch.Tensor]:
        built.append(True)
        started = time.perf_counter()
        with seeded(stream_seed(crafting.seed, "craft", plan.index)):  # stochastic attacks
            made = ATTACKS.get(attack.name)(whole_set, problem)
        if not bool(torch.isfinite(made.poisons).all()):
            raise NumericalError("crafted poisons contain NaN or Inf")
        if made.poisons.shape != problem.bases.shape:
            raise NumericalError(
                f"attack {attack.name} returned poisons of shape "
                f"{tuple(made.poisons.shape)}; expected one per base, {tuple(problem.bases.shape)}"
            )
        metrics = {**made.metrics, "craft_s": time.perf_counter() - started}
        return {
            "poisons": made.poisons.cpu(),
            "starts": made.starts.cpu(),
            "metrics": torch.tensor(list(json.dumps(metrics).encode()), dtype=torch.uint8),
            **{f"{PER_POISON}{k}": v.detach().cpu() for k, v in made.per_poison.items()},
        }

    # Poisons depend on the attack, the clean model, the target and the bases only: the jobs of
    # a sweep that differ in their defense, victim or (with a pool) number of poisons share them
    # instead of crafting them again.
    if attack.cacheable:
        stored = crafting.cache.get_or_build("poisons", key, build, {"attack": attack.name})
    else:
        stored = build()
    metrics = json.loads(bytes(stored["metrics"].tolist()).decode())
    per_poison = {
        k[len(PER_POISON) :]: v.to(device) for k, v in stored.items() if k.startswith(PER_POISON)
    }
    made = Crafted(stored["poisons"].to(device), stored["starts"].to(device), metrics, per_poison)
    return made.first(plan.num_poisons), not built


@functools.cache
def crafting_code_fingerprint(craft_fn) -> str:
    """A hash of the source of the modules crafting depends on (the attack's own and frogs'
    attacks, the budget among them), so that cached poisons are never reused across a change to
    that code."""
    # frogs.attacks (imported above) loads the budget, so it is among the modules hashed here
    names = {craft_fn.__module__}
    names |= {name for name in sys.modules if name.startswith("frogs.attacks")}
    sources = {}
    for name in sorted(names):
        try:
            sources[name] = inspect.getsource(sys.modules[name])
        except (OSError, TypeError):  # no source file (frozen, interactive): name it only
            sources[name] = name
    return stable_hash(sources)


def defend(defense: DefenseSettings, evaluator: Evaluator, training: PoisonedSet) -> Filtered:
    """Stage 2: the defense's keep mask over the poisoned set (read in the clean model's feature
    space, ``evaluator``), scored against the truth."""
    features = evaluator.set_features(training) if defense.needs_features else None
    keep = DEFENSES.get(defense.name)(defense, features, training)
    return score(keep, training)


def run_trial(job: Job, plan: TrialPlan, output_dir: Path) -> dict[str, Any]:
    """Craft -> defend -> retrain -> evaluate one planned trial; return its record's outcome
    fields."""
    settings, victim, device = job.settings, plan.victim, job.crafting.device
    crafted, reused = craft(job.crafting, plan)
    craft_s = crafted.metrics.pop("craft_s")  # when the poisons were made (they may be cached)

    started = time.perf_counter()
    training = victim.data.poisoned_set(crafted.poisons, plan.replaced())
    filtered = defend(job.defense, victim.evaluator, training)
    defend_s = time.perf_counter() - started

    started = time.perf_counter()
    poisoned = victim.retrain(training, filtered.keep, progress=settings.progress)
    retrain_s = time.perf_counter() - started

    started = time.perf_counter()
    target_image = plan.target_image.to(device)
    outcome = {
        **plan.fields(job.class_names),
        **dict.fromkeys(EXTERNAL_METRICS),  # an external attack's metrics replace them
        **evaluate(job.baseline, plan, crafted, poisoned, device),
        **filtered.fields(),
        "poisons_reused": reused,
        "poisons_crafted": crafted_count(job.crafting.attack),
        "poisons_path": None,
        "benchmark_poisons_path": None,
        "features_path": None,
    }
    index = plan.index
    if settings.save_poisons and settings.poison_format == "benchmark":
        outcome["benchmark_poisons_path"] = save_benchmark_poisons(
            output_dir, index, target_image, plan.used_bases, crafted.poisons, victim.task
        )
    if settings.save_poisons:
        outcome["poisons_path"] = save_trial_poisons(
            output_dir,
            index,
            target_image,
            plan.used_base_images.to(device),
            crafted.starts,
            crafted.poisons,
            victim.task,
        )
    if settings.save_features:
        outcome["features_path"] = save_trial_features(
            output_dir,
            index,
            victim,
            poisoned,
            target_image,
            crafted.poisons,
            settings.feature_sample,
        )
    outcome.update(
        craft_s=craft_s,
        defend_s=defend_s,
        retrain_s=retrain_s,
        eval_s=time.perf_counter() - started,
    )
    return outcome
