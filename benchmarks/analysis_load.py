"""Seconds to load and aggregate 100,000 trial records with the ``analysis`` package.

Synthetic records follow the schema-2 trial record (``frogs.experiment.run``: budget, control and
perceptibility fields), spread over many job directories as a sweep leaves them;
``analysis.load_records`` reads them and ``analysis.success_table`` aggregates success rates
and the poisons' perceptibility by swept parameters.
"""

from __future__ import annotations

import json
import logging
import math
import random
import statistics
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)


PERCEPTIBILITY_METRICS = ("l2", "linf", "linf255", "psnr", "ssim")


def perceptibility(rng: random.Random, eps: float, ok: bool) -> dict:
    """``poison_<metric>_<base|start>_<mean|worst>``: plausible values for an L-inf budget."""
    fields: dict = {}
    for to, extra in (("base", 0.02), ("start", 0.0)):
        linf = eps + extra * rng.random()
        l2 = linf * 30 * (0.5 + rng.random())
        psnr = 20 * math.log10(1 / linf) - 5 * rng.random()
        ssim = 1 - 4 * linf * rng.random()
        worst = {"l2": l2, "linf": linf, "linf255": linf * 255, "psnr": psnr, "ssim": ssim}
        for metric in PERCEPTIBILITY_METRICS:
            better = metric in ("psnr", "ssim")
            value = worst[metric]
            mean = min(value * 1.02, 1.0) if metric == "ssim" else value * (1.05 if better else 0.9)
            fields[f"poison_{metric}_{to}_mean"] = mean if ok else None
            fields[f"poison_{metric}_{to}_worst"] = value if ok else None
    return fields


def synthetic_record(rng: random.Random, job: int, index: int) -> dict:
    """One plausible ok (or, rarely, failed) transfer/end-to-end trial record."""
    num_poisons = (1, 5, 10, 25, 50)[job % 5]
    opacity = (0.0, 0.2, 0.3)[job % 3]
    eps_255 = (2.0, 8.0)[job % 2]
    ok = rng.random() > 0.02
    success = rng.random() < 0.3 + 0.01 * num_poisons if ok else None
    control = rng.random() < 0.02 if ok else None
    record = {
        "schema": 2,
        "trial_id": f"{job:05d}{index:06d}",
        "job_id": f"job{job:05d}",
        "trial_index": index,
        "status": "ok" if ok else "failed",
        "error": None if ok else "NumericalError: feature distance became non-finite",
        "scenario": "end_to_end" if job % 2 else "transfer",
        "dataset": "cifar10",
        "model": "alexnet_cifar",
        "attack": "feature_collision",
        "victim": "end_to_end" if job % 2 else "transfer",
        "target_selection": "random",
        "recipe": "algorithm1",
        "num_poisons": num_poisons,
        "opacity": opacity,
        "beta0": 0.25,
        "iters": 1000,
        "step": "sign",
        "lr": 0.5 / 255,
        "stop_distance_setting": None,
        "constraint": "linf",
        "eps": eps_255 / 255,
        "eps_255": eps_255,
        "quantize": True,
        "multi_base": True,
        "optimize": True,
        "lr_decay": False,
        "retrain_epochs": 10,
        "retrain_lr": 1.85e-5,
        "seed": job,
        "pretrain_epochs": 24,
        "pretrain_schedule": "exponential",
        "target_class": "bird",
        "base_class": "dog",
        "target_label": 2,
        "base_label": 5,
        "task_classes": ["airplane", "automobile", "bird", "cat", "deer", "dog"],
        "clean_model_source": "pretrained",
        "clean_model_sha256": f"{job % 2:064x}",
        "clean_model_weights": "alexnet_cifar-cpu.pt",
        "clean_train_acc": 0.99,
        "clean_test_acc": 0.8,
        "stop_distance": None,
        "victim_train_size": 20000,
        "test_duplicates_removed": 3,
        "target_index": rng.randrange(10000),
        "base_indices": [rng.randrange(10000) for _ in range(min(num_poisons, 5))],
        "outlier_rank": None,
        "beta": 0.25 * 192**2 / 3072**2,
        "success": success,
        "target_pred": ("dog" if success else "bird") if ok else None,
        "target_base_prob": rng.random() if ok else None,
        "target_true_prob": rng.random() if ok else None,
        "target_base_prob_clean": rng.random() if ok else None,
        "target_true_prob_clean": rng.random() if ok else None,
        "control_success": control,
        "control_target_pred": ("dog" if control else "bird") if ok else None,
        "control_target_base_prob": rng.random() if ok else None,
        "clean_acc_before": 0.8,
        "clean_acc_control": 0.8 - rng.random() * 0.01 if ok else None,
        "clean_acc_after": 0.8 - rng.random() * 0.01 if ok else None,
        "accuracy_set_size": 9990 - num_poisons,
        "angular_deviation_deg": rng.random() * 5 if ok else None,
        "angular_deviation_per_epoch": [rng.random() * 5 for _ in range(10)] if ok else None,
        "control_drift_deg": rng.random() if ok else None,
        "feat_dist_before": 20 + rng.random(),
        "feat_dist_after": 2 + rng.random(),
        "feat_dist_after_max": 3 + rng.random(),
        **perceptibility(rng, eps_255 / 255, ok),
        "craft_iters_run": 1000,
        "poisons_path": None,
        "features_path": None,
        "craft_s": 30 * rng.random(),
        "retrain_s": 100 * rng.random(),
        "eval_s": rng.random(),
        "frogs_version": "0.1.0",
        "git_sha": "0" * 40,
        "torch_version": "2.14.1",
        "device": "cuda",
        "host": "node01",
        "slurm_job_id": str(1000 + job),
        "finished_at": "2025-01-01T00:00:00+00:00",
    }
    return record


def write_records(root: Path, records: int, per_job: int = 1000) -> None:
    """``records`` trial records in job directories of ``per_job`` each, as a sweep writes them."""
    rng = random.Random(0)
    for job in range((records + per_job - 1) // per_job):
        job_dir = root / f"multirun/{job}"
        job_dir.mkdir(parents=True)
        count = min(per_job, records - job * per_job)
        lines = (json.dumps(synthetic_record(rng, job, i)) for i in range(count))
        (job_dir / "results.jsonl").write_text("\n".join(lines) + "\n")


def run_analysis(records: int, repeats: int) -> dict[str, object]:
    """Median seconds of ``load_records`` + ``success_table``; reports a missing package plainly."""
    try:
        import analysis
    except ImportError as exc:
        log.warning("analysis package not importable (%s): analysis benchmark skipped", exc)
        return {"analysis_error": f"analysis not importable: {exc}"}
    missing = [n for n in ("load_records", "success_table") if not hasattr(analysis, n)]
    if missing:
        return {"analysis_error": f"analysis lacks {', '.join(missing)}"}
    with tempfile.TemporaryDirectory(prefix="frogs-bench-records-") as tmp:
        write_records(Path(tmp), records)
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            loaded = analysis.load_records([tmp])
            frame = getattr(loaded, "frame", loaded)
            table = analysis.success_table(
                frame, by=["scenario", "attack.num_poisons", "attack.opacity"]
            )
            seconds.append(time.perf_counter() - started)
    if len(frame) != records:
        return {"analysis_error": f"loaded {len(frame)} of {records} records"}
    log.info("analysis of %d records: %s s (%d groups)", records, seconds, len(table))
    return {"analysis_s": statistics.median(seconds), "analysis_records": records}
