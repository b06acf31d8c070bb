"""Stage 0 of a job: load the data, the clean model, the victim and the crafting ensemble once,
and choose every trial's target (``prepare_job`` -> ``Job``)."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import torch

from frogs.attacks import ATTACKS, FeatureFn
from frogs.config.registry import import_builtins
from frogs.config.settings import CLEAN, JobSettings
from frogs.data.datasets import DATASETS, ImageData, duplicated_test_images, load_dataset
from frogs.data.selection import TargetChoice, check_enough_bases, choose_targets
from frogs.data.task import resolve_task
from frogs.defenses import DEFENSES
from frogs.errors import ConfigError
from frogs.experiment.job import Baseline, Crafting, Job, Trials
from frogs.experiment.seeds import retrain_seeds, stream_seed
from frogs.interchange.fixed_trials import check_in_training_set, fixed_trials
from frogs.models.architectures import MODELS, prepare_for_device
from frogs.models.precision import resolve_amp
from frogs.models.pretrain import dataset_fingerprint, load_clean_model
from frogs.store.cache import ArtifactCache
from frogs.store.identity import cache_key
from frogs.victims import VICTIMS
from frogs.victims.base import Victim, VictimInputs

log = logging.getLogger(__name__)


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
            extractors.append(victim.evaluator.feature_fn)
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
    key = cache_key(data=dataset_fingerprint(data))

    def build() -> dict[str, torch.Tensor]:
        return {"duplicated": duplicated_test_images(data)}

    return cache.get_or_build("duplicates", key, build, {"dataset": data.name})["duplicated"]


def prepare_job(settings: JobSettings, device: torch.device) -> Job:
    """Load data, the clean model and the victim; choose the targets of every trial."""
    import_builtins("frogs.victims")  # settings built in code, not composed, name victims too
    for registry, name in (
        (DATASETS, settings.dataset.name),
        (MODELS, settings.model.name),
        (ATTACKS, settings.attack.name),
        (DEFENSES, settings.defense.name),
        (VICTIMS, settings.victim.name),
    ):
        registry.get(name)  # an unknown name fails here, before data loading or pretraining
    data = load_dataset(settings.dataset)
    task = resolve_task(
        data, settings.dataset, VICTIMS.settings_class(settings.victim.name).default_task_classes
    )
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
    victim = VICTIMS.get(settings.victim.name)(
        VictimInputs(
            settings.victim,
            clean,
            data,
            task,
            settings.dataset,
            cache,
            device,
            retrain_seeds(settings.seed),
            duplicated,
            amp=amp,
        )
    )
    evaluator = victim.evaluator
    if fixed is not None:
        check_in_training_set(fixed, victim.data.train_idx, settings.victim.name)
        target_candidates = torch.tensor([trial.target_index for trial in fixed])
        probs = evaluator.clean_test_probs(target_candidates)
        targets = [TargetChoice(trial.target_index, None) for trial in fixed]
    else:
        target_candidates = torch.nonzero((data.test_y == task.target_label) & usable).flatten()
        probs = evaluator.clean_test_probs(target_candidates)
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
    attack = settings.attack.resolve(evaluator.clean_training_features)
    trials = Trials(
        data,
        victim,
        targets,
        base_candidates,
        attack,
        settings.seed,
        settings.trial_offset,
        device,
        fixed,
    )
    baseline = Baseline(
        victim,
        clean_probs,
        evaluator.test_predictions(evaluator.clean_classifier()),
        settings.progress,
    )
    crafting = Crafting(
        attack,
        ensemble_extractors(settings, data, victim, cache, device, amp),
        evaluator.feature_fn,
        evaluator.model_identity(),
        settings.model,  # how named ensemble members are trained
        dataset_fingerprint(data),
        settings.seed,
        device,
        amp,
        settings.progress,
        cache,
    )
    return Job(
        settings,
        clean,
        victim,
        list(data.class_names),
        amp,
        trials,
        crafting,
        settings.defense.resolve(settings),
        baseline,
    )
