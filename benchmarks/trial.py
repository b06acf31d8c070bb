"""Transfer trials per minute on Fashion-MNIST, and the job overhead every SLURM task pays.

Trials run through frogs' own ``prepare_job`` and ``run_trial`` on the default configuration
(``dataset=fashion_mnist victim=transfer``): craft one poison, retrain the head, evaluate. The
baseline recomputes the clean training and test features in every trial instead of reusing the
job's cached ones, as a loop without the feature cache would.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.timing import Measured, interleaved

log = logging.getLogger(__name__)


def job_settings(overrides: list[str]):
    """Compose the frogs config as the CLI would (``frogs <overrides>``) into typed settings."""
    from frogs.config.compose import compose_settings

    return compose_settings(overrides)


def base_overrides(cache_dir: str | None) -> list[str]:
    cache = [f"cache_dir={cache_dir}"] if cache_dir else []
    return ["device=cpu", "progress=false", "save_poisons=false", *cache]


def run_transfer(iters: int, repeats: int, cache_dir: str | None) -> Measured:
    """Trials per minute with the job's cached clean features vs recomputed in every trial."""
    import torch

    from frogs.experiment.prepare import prepare_job
    from frogs.experiment.trial import run_trial
    from frogs.models.train import predict_in_batches

    settings = job_settings([*base_overrides(cache_dir), "trials=1", f"attack.iters={iters}"])
    job = prepare_job(settings, torch.device("cpu"))
    victim, plan = job.victim, job.trials.plan(0)
    out = Path(tempfile.mkdtemp(prefix="frogs-bench-"))

    def cached() -> float:
        run_trial(job, plan, out)
        return 60.0  # one trial; rates come out in trials per minute

    def recomputed() -> float:
        features = victim.evaluator.model.features
        victim.retrainer.train_features = predict_in_batches(features, victim.data.train_x)
        victim.evaluator.test_features = predict_in_batches(features, victim.data.test_x)
        run_trial(job, plan, out)
        return 60.0

    measured = interleaved({"frogs": cached, "recompute": recomputed}, repeats, desc="transfer")
    log.info(
        "transfer trials/min: cached %.2f, recomputed %.2f",
        measured.median("frogs"),
        measured.median("recompute"),
    )
    return measured


_CHILD = """
import sys, time, json
from benchmarks.trial import job_settings
import torch
from frogs.experiment.prepare import configure_threads, prepare_job, resolve_device
settings = job_settings(json.loads(sys.argv[1]))
configure_threads(settings.threads)
prepare_job(settings, resolve_device(settings.device))
print("FIRST_TRIAL_AT", time.time())
"""


def job_overhead_once(overrides: list[str]) -> float:
    """Seconds from launching a fresh interpreter to the point where its first trial starts."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(overrides)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    stamp = next(line for line in done.stdout.splitlines() if line.startswith("FIRST_TRIAL_AT"))
    return float(stamp.split()[1]) - started


def run_job_overhead(repeats: int, cache_dir: str | None, warm: bool = True) -> list[float]:
    """Job start-up seconds (interpreter, imports, config, data, cached model, victim), warm cache.

    One untimed run first fills the cache (the clean model and features), as the first job of a
    sweep would; the timed runs then see what every later job pays. ``warm=False`` skips it when
    the caller has just run the same job in-process.
    """
    overrides = [*base_overrides(cache_dir), "trials=1"]
    if warm:
        job_overhead_once(overrides)
    seconds = [job_overhead_once(overrides) for _ in range(repeats)]
    log.info("job overhead: %s s", [round(s, 2) for s in seconds])
    return seconds
