"""One trial, in the order its data flows: plan (target, bases) -> craft (``frogs.attacks``) ->
defend (``frogs.defenses``) -> retrain (``frogs.victims``) -> evaluate
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
from frogs.config.settings import AttackSettings, DefenseSettings
from frogs.data.poisoned_set import PoisonedSet
from frogs.data.selection import TargetChoice, choose_bases
from frogs.data.task import Task
from frogs.defenses import DEFENSES, Filtered, score
from frogs.errors import NumericalError
from frogs.experiment.evaluate import evaluate
from frogs.experiment.job import Job, TrialPlan
from frogs.experiment.seeds import stream_seed
from frogs.interchange.fixed_trials import FixedTrial
from frogs.models.pretrain import dataset_fingerprint
from frogs.models.train import seeded
from frogs.store.identity import cache_key, stable_hash
from frogs.store.saving import save_benchmark_poisons, save_trial_features, save_trial_poisons
from frogs.victims.evaluator import Evaluator

log = logging.getLogger(__name__)


#: Prefix of the per-poison metrics in a cached poison set (``Crafted.per_poison``).
PER_POISON = "per_poison."


def crafted_count(attack: AttackSettings) -> int:
    """How many poisons a trial crafts: ``attack.pool`` when set, else ``attack.num_poisons``."""
    return attack.pool if attack.pool is not None else attack.num_poisons


def fixed_trial(job: Job, trial_index: int) -> FixedTrial | None:
    """The file's entry for this trial (None when frogs draws the targets and bases)."""
    return None if job.fixed is None else job.fixed[trial_index - job.settings.trial_offset]


def plan_trial(job: Job, trial_index: int) -> TrialPlan:
    """The trial's plan: a fixed trial's pair and training bases, else the job's pair."""
    fixed = fixed_trial(job, trial_index)
    if fixed is None:
        return TrialPlan(job.victim, None)
    task = replace(job.victim.task, target_label=fixed.target_label, base_label=fixed.base_label)
    return TrialPlan(job.victim.for_pair(task), fixed)


def trial_bases(job: Job, trial_index: int, target: TargetChoice) -> torch.Tensor:
    """Dataset indices of the bases of the whole crafted set (``crafted_count``): those a file
    fixed (training images), else test images from the trial's own seeded stream, or with
    ``attack.base_selection=closest`` the base-class images nearest the target in the clean
    feature space. A trial uses the first ``num_poisons`` (``choose_bases`` orders the
    candidates the same whatever the count)."""
    attack = job.settings.attack
    fixed = fixed_trial(job, trial_index)
    if fixed is not None:
        return torch.tensor(fixed.base_indices)
    generator = torch.Generator().manual_seed(stream_seed(job.settings.seed, "bases", trial_index))
    distances = None
    if attack.base_selection == "closest":
        with torch.no_grad():
            target_features = job.victim.evaluator.feature_fn(
                job.data.test_x[target.index].unsqueeze(0).to(job.device)
            ).flatten(1)
        distances = (job.base_candidate_features() - target_features).norm(dim=1).cpu()
    return choose_bases(
        job.base_candidates, crafted_count(attack), attack.multi_base, generator, distances
    )


def used_bases(job: Job, trial_index: int, target: TargetChoice) -> torch.Tensor:
    """The bases a trial's poisons come from: the first ``num_poisons`` of ``trial_bases``."""
    return trial_bases(job, trial_index, target)[: job.settings.attack.num_poisons]


def task_fields(job: Job, task: Task | None = None) -> dict[str, Any]:
    """The attacked class pair and the victim task: the job's (identical for every trial), or
    ``task``'s (a fixed trial's own pair)."""
    task, names = task or job.victim.task, job.data.class_names
    return {
        "target_class": names[task.target_label],
        "base_class": names[task.base_label],
        "target_label": task.target_label,
        "base_label": task.base_label,
        "task_classes": list(task.names),
    }


def craft(
    job: Job, trial_index: int, target: TargetChoice, plan: TrialPlan | None = None
) -> tuple[Crafted, torch.Tensor, bool]:
    """Stage 1: the trial's bases and the attack's poisons; returns them, the base indices and
    whether the poisons were reused (crafted earlier, by this job or another, and cached).

    With ``attack.pool`` the attack crafts that many poisons (keyed as a job with
    ``num_poisons=pool`` would be) and the trial uses the first ``num_poisons``.
    """
    plan = plan or plan_trial(job, trial_index)
    settings, task, device = job.settings, plan.victim.task, job.device
    used = job.attack.num_poisons
    crafting = replace(job.attack, num_poisons=crafted_count(job.attack), pool=None)
    base_indices = trial_bases(job, trial_index, target)
    problem = CraftingProblem(
        target=job.data.test_x[target.index].to(device),
        bases=plan.base_images(job.data, base_indices).to(device),
        target_label=task.target_row,
        base_label=task.base_row,
        extractors=job.extractors,
        victim_features=job.victim.evaluator.feature_fn,
        budget=attack_budget(job.attack),
        device=device,
        progress=settings.progress,
        amp=job.amp,
        trial_index=trial_index,
    )
    key = cache_key(
        attack=crafting,
        clean_model=job.victim.evaluator.model_identity(),
        ensemble_models=settings.model,  # how named ensemble members are trained
        data=dataset_fingerprint(job.data),
        target=target.index,
        bases=base_indices.tolist(),
        bases_split=plan.base_split,
        pixels=[problem.target, problem.bases],
        stream=[settings.seed, trial_index],
        device=device.type,
        amp=job.amp,
        code=crafting_code_fingerprint(ATTACKS.get(job.attack.name)),
    )

    built: list[bool] = []

    def build() -> dict[str, torch.Tensor]:
        built.append(True)
        started = time.perf_counter()
        with seeded(stream_seed(settings.seed, "craft", trial_index)):  # stochastic attacks
            made = ATTACKS.get(job.attack.name)(crafting, problem)
        if not bool(torch.isfinite(made.poisons).all()):
            raise NumericalError("crafted poisons contain NaN or Inf")
        if made.poisons.shape != problem.bases.shape:
            raise NumericalError(
                f"attack {job.attack.name} returned poisons of shape "
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
    if job.attack.cacheable:
        stored = job.cache.get_or_build("poisons", key, build, {"attack": job.attack.name})
    else:
        stored = build()
    metrics = json.loads(bytes(stored["metrics"].tolist()).decode())
    per_poison = {
        k[len(PER_POISON) :]: v.to(device) for k, v in stored.items() if k.startswith(PER_POISON)
    }
    made = Crafted(stored["poisons"].to(device), stored["starts"].to(device), metrics, per_poison)
    return made.first(used), base_indices[:used], not built


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


def run_trial(job: Job, trial_index: int, target: TargetChoice, output_dir: Path) -> dict[str, Any]:
    """Craft -> defend -> retrain -> evaluate one target; return its record's outcome fields."""
    settings, plan = job.settings, plan_trial(job, trial_index)
    victim = plan.victim
    crafted, base_indices, reused = craft(job, trial_index, target, plan)
    craft_s = crafted.metrics.pop("craft_s")  # when the poisons were made (they may be cached)

    started = time.perf_counter()
    training = victim.data.poisoned_set(crafted.poisons, plan.replaced(base_indices))
    filtered = defend(job.defense, victim.evaluator, training)
    defend_s = time.perf_counter() - started

    started = time.perf_counter()
    poisoned = victim.retrain(training, filtered.keep, progress=settings.progress)
    retrain_s = time.perf_counter() - started

    started = time.perf_counter()
    target_image = job.data.test_x[target.index].to(job.device)
    bases = plan.base_images(job.data, base_indices).to(job.device)
    outcome = {
        **(task_fields(job, victim.task) if plan.fixed is not None else {}),
        "target_index": target.index,
        "base_indices": base_indices.tolist(),
        "outlier_rank": target.outlier_rank,
        **plan.fields(),
        **dict.fromkeys(EXTERNAL_METRICS),  # an external attack's metrics replace them
        **evaluate(job, plan, target, base_indices, crafted, poisoned),
        **filtered.fields(),
        "poisons_reused": reused,
        "poisons_crafted": crafted_count(job.attack),
        "poisons_path": None,
        "benchmark_poisons_path": None,
        "features_path": None,
    }
    if settings.save_poisons and settings.poison_format == "benchmark":
        outcome["benchmark_poisons_path"] = save_benchmark_poisons(
            output_dir, trial_index, target_image, base_indices, crafted.poisons, victim.task
        )
    if settings.save_poisons:
        outcome["poisons_path"] = save_trial_poisons(
            output_dir,
            trial_index,
            target_image,
            bases,
            crafted.starts,
            crafted.poisons,
            victim.task,
        )
    if settings.save_features:
        outcome["features_path"] = save_trial_features(
            output_dir,
            trial_index,
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
