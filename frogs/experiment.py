"""One job: load data and the clean model once, then run and record ``trials`` attack trials.

The stages run in the order the data flows (DESIGN.md): dataset -> clean model -> victim ->
targets & bases -> watermark & craft -> retrain -> evaluate -> record. A trial that raises is
recorded as ``failed`` with its reason and the job goes on; trials already in ``results.jsonl``
are skipped, so relaunching an interrupted job finishes it.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from frogs.attack import ATTACKS, attack_budget
from frogs.cache import ArtifactCache
from frogs.data import DATASETS, ImageData, duplicated_test_images, load_dataset
from frogs.errors import ConfigError, FrogsError, NumericalError
from frogs.models import MODELS, prepare_for_device
from frogs.perceptibility import perceptibility_fields
from frogs.precision import resolve_amp
from frogs.pretrain import CleanModel, dataset_fingerprint, load_clean_model
from frogs.records import (
    RESULTS_FILE,
    SCHEMA_VERSION,
    RecordWriter,
    experiment_identity,
    now_iso,
    provenance,
    stable_hash,
    trial_id,
)
from frogs.saving import save_trial_features, save_trial_poisons
from frogs.selection import TargetChoice, check_enough_bases, choose_bases, choose_targets
from frogs.settings import JobSettings, resolved_stop_distance
from frogs.task import resolve_task
from frogs.train import predict_in_batches
from frogs.victims import VICTIMS, Victim

log = logging.getLogger(__name__)

_STREAMS = {"targets": 1, "bases": 2}


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


@dataclass
class Job:
    """What every trial of a job shares: loaded once per job."""

    settings: JobSettings
    data: ImageData
    clean: CleanModel
    victim: Victim
    device: torch.device
    targets: list[TargetChoice]
    base_candidates: torch.Tensor
    clean_probs: dict[int, torch.Tensor]
    stop_distance: float | None
    clean_predictions: torch.Tensor
    amp: bool = False
    _control_predictions: torch.Tensor | None = None

    def control_predictions(self) -> torch.Tensor:
        """The control's test predictions, computed by the first trial that needs them (a control
        that fails to train fails each trial, recorded, like any other numerical failure)."""
        if self._control_predictions is None:
            control = self.victim.control(progress=self.settings.progress)
            self._control_predictions = self.victim.test_predictions(control.predict)
        return self._control_predictions


def min_training_feature_distance(features: torch.Tensor) -> float:
    """The smallest distance between two distinct training points in feature space.

    The paper's stopping threshold (3 for its Inception-v3 features): a poison this close to its
    target is as close as any two training images are. Pairs at distance 0 (duplicates) are
    ignored.
    """
    from sklearn.neighbors import NearestNeighbors

    points = features.detach().cpu().double().numpy()
    distances, _ = NearestNeighbors(n_neighbors=2).fit(points).kneighbors(points)
    nearest = distances[:, 1]
    nearest = nearest[nearest > 0]
    if not len(nearest):
        raise ConfigError(
            "attack.stop_distance=auto needs two distinct training points in feature space"
        )
    return float(nearest.min())


def resolve_stop_distance(settings: JobSettings, victim: Victim) -> float | None:
    """``attack.stop_distance`` as a number (``auto``: ``min_training_feature_distance``)."""
    value = resolved_stop_distance(settings.attack)
    if value != "auto":
        return value
    features = predict_in_batches(victim.feature_fn, victim.train_x)
    distance = min_training_feature_distance(features)
    log.info("stop_distance=auto: %.4f (minimum distance between training features)", distance)
    return distance


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
        (VICTIMS, settings.victim.name),
    ):
        registry.get(name)  # an unknown name fails here, before data loading or pretraining
    data = load_dataset(settings.dataset)
    victim_cls = VICTIMS.get(settings.victim.name)
    task = resolve_task(data, settings.dataset, victim_cls.default_task_classes)
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
    stop_distance = resolve_stop_distance(settings, victim)
    return Job(
        settings,
        data,
        clean,
        victim,
        device,
        targets,
        base_candidates,
        clean_probs,
        stop_distance,
        victim.test_predictions(victim.clean_classifier()),
        amp,
    )


def trial_parameters(settings: JobSettings) -> dict[str, Any]:
    """The swept parameters of a trial as flat record columns (pixel values in [0, 1] units)."""
    attack, victim = settings.attack, settings.victim
    budget = attack_budget(attack)
    stop = resolved_stop_distance(attack)
    return {
        "scenario": victim.name,
        "dataset": settings.dataset.name,
        "model": settings.model.name,
        "attack": attack.name,
        "victim": victim.name,
        "target_selection": settings.target_selection,
        "recipe": attack.recipe,
        "num_poisons": attack.num_poisons,
        "opacity": attack.opacity,
        "beta0": attack.beta0,
        "iters": attack.iters,
        "step": attack.step,
        "lr": attack.lr,
        "stop_distance_setting": stop if isinstance(stop, str) else None,
        "constraint": budget.norm,
        "eps": budget.eps,
        "eps_255": budget.eps_255,
        "quantize": attack.quantize,
        "multi_base": attack.multi_base,
        "optimize": attack.optimize,
        "lr_decay": attack.lr_decay,
        "retrain_epochs": victim.epochs,
        "retrain_lr": victim.lr,
        "seed": settings.seed,
        "pretrain_epochs": settings.model.pretrain.epochs,
        "pretrain_schedule": settings.model.pretrain.schedule,
        "pretrain_classes": str(settings.model.pretrain.classes),
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
        "stop_distance": job.stop_distance,
        "victim_train_size": len(victim.train_y),
        "test_duplicates_removed": victim.test_duplicates_removed,
    }


def trial_bases(job: Job, trial_index: int) -> torch.Tensor:
    """Test-set indices of a trial's bases, from its own seeded stream."""
    attack = job.settings.attack
    generator = torch.Generator().manual_seed(stream_seed(job.settings.seed, "bases", trial_index))
    return choose_bases(job.base_candidates, attack.num_poisons, attack.multi_base, generator)


def task_fields(job: Job) -> dict[str, Any]:
    """The attacked class pair and the victim task: identical for every trial of a job."""
    task, names = job.victim.task, job.data.class_names
    return {
        "target_class": names[task.target_label],
        "base_class": names[task.base_label],
        "target_label": task.target_label,
        "base_label": task.base_label,
        "task_classes": list(task.names),
    }


def run_trial(job: Job, trial_index: int, target: TargetChoice, output_dir: Path) -> dict[str, Any]:
    """Craft, retrain, evaluate one target; return the outcome fields of its record."""
    settings, victim, task, device = job.settings, job.victim, job.victim.task, job.device
    base_indices = trial_bases(job, trial_index)
    target_image = job.data.test_x[target.index].to(device)
    bases = job.data.test_x[base_indices].to(device)

    started = time.perf_counter()
    crafted = ATTACKS.get(settings.attack.name)(
        settings.attack,
        victim.feature_fn,
        target_image,
        bases,
        victim.model.feature_dim,
        progress=settings.progress,
        amp=job.amp,
        stop_distance=job.stop_distance,
    )
    poisons = crafted.result.poisons
    if not bool(torch.isfinite(poisons).all()):
        raise NumericalError("crafted poisons contain NaN or Inf")
    craft_s = time.perf_counter() - started

    started = time.perf_counter()
    poisoned = victim.retrain(poisons, progress=settings.progress)
    retrain_s = time.perf_counter() - started

    started = time.perf_counter()
    control = victim.control()
    with torch.no_grad():
        target_batch = target_image.unsqueeze(0)
        probs = torch.softmax(poisoned.predict(target_batch), 1)[0].cpu()
        control_probs = torch.softmax(control.predict(target_batch), 1)[0].cpu()
    if not bool(torch.isfinite(probs).all()):
        raise NumericalError("the retrained victim outputs NaN or Inf for the target")
    clean_probs = job.clean_probs[target.index]
    predicted = int(probs.argmax())
    control_predicted = int(control_probs.argmax())
    exclude = torch.tensor([target.index, *base_indices.tolist()])
    outcome = {
        "target_index": target.index,
        "base_indices": base_indices.tolist(),
        "outlier_rank": target.outlier_rank,
        "beta": crafted.beta,
        "success": predicted == task.base_row,
        "target_pred": task.names[predicted],
        "target_base_prob": float(probs[task.base_row]),
        "target_true_prob": float(probs[task.target_row]),
        "target_base_prob_clean": float(clean_probs[task.base_row]),
        "target_true_prob_clean": float(clean_probs[task.target_row]),
        "control_success": control_predicted == task.base_row,
        "control_target_pred": task.names[control_predicted],
        "control_target_base_prob": float(control_probs[task.base_row]),
        "clean_acc_before": victim.accuracy(job.clean_predictions, exclude),
        "clean_acc_control": victim.accuracy(job.control_predictions(), exclude),
        "clean_acc_after": victim.accuracy(victim.test_predictions(poisoned.predict), exclude),
        "accuracy_set_size": victim.accuracy_set_size(exclude),
        "angular_deviation_deg": poisoned.angle_per_epoch[-1],
        "angular_deviation_per_epoch": poisoned.angle_per_epoch,
        "control_drift_deg": control.drift_deg,
        "feat_dist_before": float(crafted.result.start_distance.mean()),
        "feat_dist_after": float(crafted.result.final_distance.mean()),
        "feat_dist_after_max": float(crafted.result.final_distance.max()),
        **perceptibility_fields(poisons, bases, crafted.watermarked),
        "craft_iters_run": crafted.result.iters_run,
        "poisons_path": None,
        "features_path": None,
    }
    if settings.save_poisons:
        outcome["poisons_path"] = save_trial_poisons(
            output_dir, trial_index, target_image, bases, crafted.watermarked, poisons, task
        )
    if settings.save_features:
        outcome["features_path"] = save_trial_features(
            output_dir,
            trial_index,
            victim,
            poisoned,
            target_image,
            poisons,
            settings.feature_sample,
        )
    outcome.update(craft_s=craft_s, retrain_s=retrain_s, eval_s=time.perf_counter() - started)
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
                base_indices=trial_bases(job, index).tolist(),
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
