"""One job: load data and the clean model once, then run and record ``trials`` attack trials.

The stages run in the order the data flows (DESIGN.md): dataset -> clean model -> victim ->
targets & bases -> craft (``frogs.attacks``) -> defend (``frogs.defenses``) -> retrain
(``frogs.victims``) -> evaluate (``frogs.experiment.evaluate``) -> record. A trial that raises is
recorded as ``failed`` with its reason and the job goes on; trials already in ``results.jsonl``
are skipped, so relaunching an interrupted job finishes it.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from frogs.attacks import ATTACKS, Crafted, CraftingProblem, FeatureFn, attack_budget
from frogs.attacks.external import EXTERNAL_METRICS
from frogs.config.settings import CLEAN, AttackSettings, JobSettings, setting_columns
from frogs.data.datasets import DATASETS, ImageData, duplicated_test_images, load_dataset
from frogs.data.poisoned_set import PoisonedSet
from frogs.data.selection import TargetChoice, check_enough_bases, choose_bases, choose_targets
from frogs.data.task import Task, resolve_task
from frogs.defenses import DEFENSES, Filtered, score
from frogs.errors import ConfigError, FrogsError, NumericalError
from frogs.experiment.evaluate import evaluate
from frogs.experiment.job import Job, TrialPlan
from frogs.interchange.fixed_trials import (
    FixedTrial,
    check_in_training_set,
    file_sha256,
    fixed_trials,
)
from frogs.models.architectures import MODELS, prepare_for_device
from frogs.models.precision import resolve_amp
from frogs.models.pretrain import dataset_fingerprint, load_clean_model
from frogs.store.cache import ArtifactCache
from frogs.store.records import (
    RESULTS_FILE,
    SCHEMA_VERSION,
    RecordWriter,
    experiment_identity,
    now_iso,
    provenance,
    stable_hash,
    trial_id,
)
from frogs.store.saving import save_benchmark_poisons, save_trial_features, save_trial_poisons
from frogs.victims import VICTIMS, Victim

log = logging.getLogger(__name__)

_STREAMS = {"targets": 1, "bases": 2, "craft": 3}
#: Prefix of the per-poison metrics in a cached poison set (``Crafted.per_poison``).
PER_POISON = "per_poison."


def stream_seed(seed: int, stream: str, index: int = 0) -> int:
    """An independent seed per (job seed, stream, trial) so streams never share randomness."""
    sequence = np.random.SeedSequence([seed, _STREAMS[stream], index])
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> 1)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is a configuration error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device='cuda' is not allowed here: CUDA is not available; use auto or cpu"
        )
    return torch.device(name)


def configure_threads(threads: int | None) -> None:
    """Use the configured threads, else the CPUs SLURM gave the task, else torch's default."""
    count = threads or int(os.environ.get("SLURM_CPUS_PER_TASK", "0") or 0)
    if count:
        torch.set_num_threads(count)


def ensemble_extractors(
    settings: JobSettings,
    data: ImageData,
    victim: Victim,
    cache: ArtifactCache,
    device: torch.device,
    amp: bool,
) -> list[FeatureFn]:
    """The feature maps an attack crafts against (``crafting_extractors``): ``clean`` is the
    victim's clean model; a model name is that network trained like the clean model and cached;
    a path is a ``frogs pretrain`` checkpoint."""
    extractors: list[FeatureFn] = []
    for entry in settings.attack.crafting_extractors():
        if entry == CLEAN:
            extractors.append(victim.feature_fn)
            continue
        model = settings.model
        if Path(entry).expanduser().is_file():
            model = replace(model, checkpoint=str(Path(entry).expanduser()), checkpoint_sha256=None)
        else:
            model = replace(
                model,
                name=entry,
                weights=None,
                checkpoint=None,
                checkpoint_sha256=None,
                on_missing_weights="pretrain",
            )
        log.info("ensemble member %s: loading or training it", entry)
        member = load_clean_model(
            data,
            model,
            cache,
            device,
            progress=settings.progress,
            task_classes=victim.task.classes,
        )
        network = prepare_for_device(member.model, device, amp).eval()
        for p in network.parameters():
            p.requires_grad_(False)
        extractors.append(network.features)
    return extractors


def cached_duplicates(data: ImageData, cache: ArtifactCache) -> torch.Tensor:
    """``duplicated_test_images(data)``, computed once per dataset and cached (hashing 70,000
    images is a noticeable part of a job's start); keyed like the clean model's data."""
    key = stable_hash(dataset_fingerprint(data))

    def build() -> dict[str, torch.Tensor]:
        return {"duplicated": duplicated_test_images(data)}

    return cache.get_or_build("duplicates", key, build, {"dataset": data.name})["duplicated"]


def prepare_job(settings: JobSettings, device: torch.device) -> Job:
    """Load data, the clean model and the victim; choose the targets of every trial."""
    for registry, name in (
        (DATASETS, settings.dataset.name),
        (MODELS, settings.model.name),
        (ATTACKS, settings.attack.name),
        (DEFENSES, settings.defense.name),
        (VICTIMS, settings.victim.name),
    ):
        registry.get(name)  # an unknown name fails here, before data loading or pretraining
    data = load_dataset(settings.dataset)
    victim_cls = VICTIMS.get(settings.victim.name)
    task = resolve_task(data, settings.dataset, victim_cls.default_task_classes)
    # A bad setups file or poison folder fails every trial alike: say so before any other work.
    fixed = fixed_trials(settings, data, task)
    # Test images that duplicate training images are never targets, bases or accuracy images.
    cache = ArtifactCache(Path(settings.cache_dir).expanduser())
    duplicated = cached_duplicates(data, cache)
    if duplicated.any():
        log.info(
            "left out %d test images that duplicate training images (footnote 3)",
            int(duplicated.sum()),
        )
    usable = ~duplicated
    base_candidates = torch.nonzero((data.test_y == task.base_label) & usable).flatten()
    # Too few distinct bases fails every trial alike: say so before pretraining, not after.
    attack = settings.attack
    if fixed is None:
        check_enough_bases(len(base_candidates), attack.num_poisons, attack.multi_base)
    clean = load_clean_model(
        data, settings.model, cache, device, progress=settings.progress, task_classes=task.classes
    )
    amp = resolve_amp(settings.amp, device)
    log.info("bf16 autocast %s (amp=%s on %s)", "on" if amp else "off", settings.amp, device)
    model = prepare_for_device(clean.model, device, amp)
    clean = replace(clean, model=model)
    victim = victim_cls(
        settings.victim,
        clean,
        data,
        task,
        settings.dataset,
        cache,
        device,
        settings.seed,
        duplicated,
        amp=amp,
    )
    if fixed is not None:
        check_in_training_set(fixed, victim.train_idx, settings.victim.name)
        target_candidates = torch.tensor([trial.target_index for trial in fixed])
        probs = victim.clean_test_probs(target_candidates)
        targets = [TargetChoice(trial.target_index, None) for trial in fixed]
    else:
        target_candidates = torch.nonzero((data.test_y == task.target_label) & usable).flatten()
        probs = victim.clean_test_probs(target_candidates)
        correct = probs.argmax(1) == task.target_row
        targets = choose_targets(
            target_candidates,
            probs[:, task.target_row],
            correct,
            mode=settings.target_selection,
            count=settings.trials,
            offset=settings.trial_offset,
            generator=torch.Generator().manual_seed(stream_seed(settings.seed, "targets")),
        )
    clean_probs = {int(i): p for i, p in zip(target_candidates.tolist(), probs, strict=True)}
    attack = settings.attack.resolve(victim.clean_training_features)
    return Job(
        settings,
        data,
        clean,
        victim,
        device,
        targets,
        base_candidates,
        clean_probs,
        victim.test_predictions(victim.clean_classifier()),
        attack,
        settings.defense.resolve(settings),
        ensemble_extractors(settings, data, victim, cache, device, amp),
        cache,
        amp,
        fixed,
    )


def trial_parameters(settings: JobSettings) -> dict[str, Any]:
    """The swept parameters of a trial as flat record columns: the group option names, and
    ``attack.*``, ``victim.*``, ``defense.*`` derived from the options' settings (pixel values in
    [0, 1] units), plus the resolved perceptibility budget. The defense's ``auto`` knobs are
    recorded as resolved for this job."""
    attack, victim = settings.attack, settings.victim
    budget = attack_budget(attack)
    return {
        "scenario": victim.name,
        "dataset": settings.dataset.name,
        "model": settings.model.name,
        "attack": attack.name,
        "victim": victim.name,
        "defense": settings.defense.name,
        "target_selection": settings.target_selection,
        "constraint": budget.norm,
        "eps": budget.eps,
        "eps_255": budget.eps_255,
        "seed": settings.seed,
        "pretrain_epochs": settings.model.pretrain.epochs,
        "pretrain_schedule": settings.model.pretrain.schedule,
        "pretrain_classes": str(settings.model.pretrain.classes),
        **setting_columns("attack", attack),
        **setting_columns("victim", victim),
        **setting_columns("defense", settings.defense.resolve(settings)),
    }


def clean_model_fields(job: Job) -> dict[str, Any]:
    """The clean model and the victim's data: identical for every trial of a job."""
    clean, victim = job.clean, job.victim
    return {
        "clean_model_source": clean.source,
        "clean_model_sha256": clean.sha256,
        "clean_model_weights": clean.loaded_weights,
        "clean_train_acc": clean.train_accuracy,
        "clean_test_acc": clean.test_accuracy,
        "clean_model_classes": None if clean.classes is None else len(clean.classes),
        "victim_live_features": victim.live_features,
        "victim_feature_rank": victim.feature_rank,
        "victim_train_size": len(victim.train_y),
        "image_values": math.prod(victim.train_x.shape[1:]),
        "test_duplicates_removed": victim.test_duplicates_removed,
    }


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
            target_features = job.victim.feature_fn(
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
    torch.manual_seed(stream_seed(settings.seed, "craft", trial_index))  # stochastic attacks
    problem = CraftingProblem(
        target=job.data.test_x[target.index].to(device),
        bases=plan.base_images(job.data, base_indices).to(device),
        target_label=task.target_row,
        base_label=task.base_row,
        extractors=job.extractors,
        victim_features=job.victim.feature_fn,
        budget=attack_budget(job.attack),
        device=device,
        progress=settings.progress,
        amp=job.amp,
        trial_index=trial_index,
    )
    key = stable_hash(
        {
            "attack": asdict(crafting),
            "clean_model": job.victim.model_identity(),
            "ensemble_models": asdict(settings.model),  # how named ensemble members are trained
            "data": dataset_fingerprint(job.data),
            "target": target.index,
            "bases": base_indices.tolist(),
            **({"bases_split": plan.base_split} if plan.base_split != "test" else {}),
            "pixels": [float(problem.target.double().sum()), float(problem.bases.double().sum())],
            "stream": [settings.seed, trial_index],
            "device": device.type,
            "amp": job.amp,
            "code": crafting_code_fingerprint(ATTACKS.get(job.attack.name)),
        }
    )

    built: list[bool] = []

    def build() -> dict[str, torch.Tensor]:
        built.append(True)
        started = time.perf_counter()
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


def defend(job: Job, training: PoisonedSet) -> Filtered:
    """Stage 2: the defense's keep mask over the poisoned set, scored against the truth."""
    features = job.victim.set_features(training) if job.defense.needs_features else None
    keep = DEFENSES.get(job.defense.name)(job.defense, features, training)
    return score(keep, training)


def run_trial(job: Job, trial_index: int, target: TargetChoice, output_dir: Path) -> dict[str, Any]:
    """Craft -> defend -> retrain -> evaluate one target; return its record's outcome fields."""
    settings, plan = job.settings, plan_trial(job, trial_index)
    victim = plan.victim
    crafted, base_indices, reused = craft(job, trial_index, target, plan)
    craft_s = crafted.metrics.pop("craft_s")  # when the poisons were made (they may be cached)

    started = time.perf_counter()
    training = victim.poisoned_set(crafted.poisons, plan.replaced(base_indices))
    filtered = defend(job, training)
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


def run(settings: JobSettings, output_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Run every unfinished trial of this job, appending one record each; return the new records."""
    output_dir = Path(output_dir)
    device = resolve_device(settings.device)
    configure_threads(settings.threads)
    identity = experiment_identity(settings)
    indices = range(settings.trial_offset, settings.trial_offset + settings.trials)
    ids = {index: trial_id(identity, index) for index in indices}
    writer = RecordWriter(output_dir / RESULTS_FILE)
    done = writer.finished_ids()
    todo = [index for index in indices if ids[index] not in done]
    if not todo:
        log.info("all %d trials of this job are already recorded in %s", len(ids), writer.path)
        return []
    if len(todo) < len(ids):
        log.info("resuming: %d of %d trials already recorded", len(ids) - len(todo), len(ids))
    job = prepare_job(settings, device)
    common = {
        "schema": SCHEMA_VERSION,
        "job_id": stable_hash(identity),
        **trial_parameters(settings),
        **task_fields(job),
        **clean_model_fields(job),
        "setups": settings.setups,
        "setups_sha256": file_sha256(settings.setups) if settings.setups else None,
        **provenance(str(device)),
        "amp": job.amp,
    }
    records = []
    for index in tqdm(todo, desc="trials", disable=not settings.progress):
        target = job.targets[index - settings.trial_offset]
        record = {"trial_id": ids[index], "trial_index": index, **common}
        try:
            outcome = _require_finite(run_trial(job, index, target, output_dir))
            record.update(status="ok", error=None, **outcome)
        except Exception as exc:
            if isinstance(exc, FrogsError) and not isinstance(exc, NumericalError):
                raise  # bad configuration or data: every trial would fail the same way
            if isinstance(exc, NumericalError):  # expected and self-explanatory: one line
                log.warning("trial %d failed: %s", index, exc)
            else:  # unexpected: keep the traceback for the bug report
                log.exception("trial %d failed", index)
            record.update(
                status="failed",
                error=f"{type(exc).__name__}: {exc}",
                target_index=target.index,
                base_indices=used_bases(job, index, target).tolist(),
                outlier_rank=target.outlier_rank,
                success=None,
            )
        record["finished_at"] = now_iso()
        writer.append(record)
        records.append(record)
        log.info("trial %d: %s", index, _one_line(record))
    return records


def _require_finite(outcome: dict[str, Any]) -> dict[str, Any]:
    """A NaN or Inf outcome fails its trial (records are strict JSON, which has neither)."""
    for key, value in outcome.items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise NumericalError(f"the trial's {key} is {value!r}")
    return outcome


def _one_line(record: dict[str, Any]) -> str:
    if record["status"] != "ok":
        return f"failed ({record['error']})"
    return (
        f"target {record['target_index']} -> {record['target_pred']} "
        f"(success={record['success']}, base prob {record['target_base_prob']:.3f})"
    )
