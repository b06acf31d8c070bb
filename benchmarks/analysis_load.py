"""Seconds to load and aggregate 100,000 trial records with the ``analysis`` package.

Synthetic records copy two committed study records (``results/``, the schema frogs writes: budget,
control, perceptibility and settings columns) and vary what a sweep varies, spread over many job
directories as a sweep leaves them;
``analysis.load_records`` reads them and ``analysis.success_table`` aggregates success rates
and the poisons' perceptibility by swept parameters.
"""

from __future__ import annotations

import json
import logging
import random
import statistics
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)


#: Two committed study records (results/: one transfer, one end-to-end trial) whose every field,
#: in the schema frogs writes, the synthetic records copy; they vary what a sweep varies.
RESULTS = Path(__file__).resolve().parents[1] / "results"
TEMPLATE_JOBS = (
    "replication_transfer/budget=linf8,pair=bird_dog,trial_offset=0",
    "e2e_poison_count_cpu/attack.num_poisons=50,attack.opacity=0.3,attack.pool=50,pair=bird_dog,"
    "scale=cpu",
)


def templates() -> list[dict]:
    """The first ok record of each ``TEMPLATE_JOBS`` folder."""
    found = []
    for job in TEMPLATE_JOBS:
        lines = (RESULTS / job / "results.jsonl").read_text().splitlines()
        found.append(next(r for r in map(json.loads, lines) if r["status"] == "ok"))
    return found


def synthetic_record(rng: random.Random, job: int, index: int, template: dict) -> dict:
    """``template`` as trial ``index`` of job ``job``: its own ids, number of poisons, opacity,
    seed, target and outcome; failed (as frogs records a failed trial) in about 2 % of trials."""
    num_poisons = (1, 5, 10, 25, 50)[job % 5]
    keys = list(template)
    common = {k: template[k] for k in keys[: keys.index("status")]}
    common.update(
        {
            "trial_id": f"{job:05d}{index:06d}",
            "job_id": f"job{job:05d}",
            "trial_index": index,
            "seed": job,
            "attack.num_poisons": num_poisons,
            "attack.opacity": (0.0, 0.2, 0.3)[job % 3],
        }
    )
    target = {"target_index": rng.randrange(10000), "finished_at": template["finished_at"]}
    if rng.random() < 0.02:
        error = "NumericalError: feature distance became non-finite"
        return {**common, "status": "failed", "error": error, **target, "success": None}
    success = rng.random() < 0.3 + 0.01 * num_poisons
    record = {**template, **common, **target}
    record.update(
        success=success,
        control_success=rng.random() < 0.02,
        target_base_prob=rng.random(),
        feat_dist_after=2 + rng.random(),
        craft_s=30 * rng.random(),
        retrain_s=100 * rng.random(),
    )
    return record


def write_records(root: Path, records: int, per_job: int = 1000) -> None:
    """``records`` trial records in job directories of ``per_job`` each, as a sweep writes them."""
    rng = random.Random(0)
    shapes = templates()
    for job in range((records + per_job - 1) // per_job):
        job_dir = root / f"multirun/{job}"
        job_dir.mkdir(parents=True)
        count = min(per_job, records - job * per_job)
        template = shapes[job % len(shapes)]
        lines = (json.dumps(synthetic_record(rng, job, i, template)) for i in range(count))
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
