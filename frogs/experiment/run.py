"""One job: load its data, clean model and victim once (``frogs.experiment.prepare``), then run
(``frogs.experiment.trial``) and record each of its ``trials`` attack trials.

A trial that raises is recorded as ``failed`` with its reason and the job goes on; trials already
in ``results.jsonl`` are skipped, so relaunching an interrupted job finishes it. The record's
columns shared by every trial of a job (its parameters, task and clean model) are built here.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from frogs.attacks import attack_budget
from frogs.config.settings import JobSettings, setting_columns
from frogs.errors import FrogsError, NumericalError
from frogs.experiment.job import Job, TrialPlan, task_fields
from frogs.experiment.prepare import configure_threads, prepare_job, resolve_device
from frogs.experiment.trial import run_trial
from frogs.store.identity import experiment_identity, file_sha256, stable_hash, trial_id
from frogs.store.records import RESULTS_FILE, SCHEMA_VERSION, RecordWriter, now_iso, provenance

log = logging.getLogger(__name__)


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
        "victim_train_size": len(victim.data.train_y),
        "image_values": victim.data.image_values,
        "test_duplicates_removed": victim.data.test_duplicates_removed,
    }


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
        **task_fields(job.victim.task, job.class_names),
        **clean_model_fields(job),
        "setups": settings.setups,
        "setups_sha256": file_sha256(settings.setups) if settings.setups else None,
        **provenance(str(device)),
        "amp": job.amp,
    }
    records = []
    for index in tqdm(todo, desc="trials", disable=not settings.progress):
        target = job.trials.target(index)
        record = {"trial_id": ids[index], "trial_index": index, **common}
        plan: TrialPlan | None = None
        try:
            plan = job.trials.plan(index)
            outcome = _require_finite(run_trial(job, plan, output_dir))
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
                base_indices=None if plan is None else plan.used_bases.tolist(),
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
