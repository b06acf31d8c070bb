"""``kill -9`` a running job or multirun inside a trial, relaunch it: no trial lost or doubled.

The job is killed while it holds still inside a trial chosen at random (``held_frogs.py``), never
on a race against its speed. The killed-and-relaunched run must end with exactly the records of
an uninterrupted run (same trial ids, seeds and outcomes; only timings and the finish time
differ).
"""

from __future__ import annotations

import random
import signal
from pathlib import Path

import pytest

from tests.reliability.conftest import (
    TINY,
    by_trial,
    count_records,
    read_records,
    run_frogs,
    start_frogs,
    wait_until,
)

pytestmark = pytest.mark.slow

# Trials with some crafting and retraining to interrupt.
SLOW_TRIALS = [*TINY, "attack.iters=150", "victim.epochs=10"]


def kill_held(proc, hold_file: Path, results: callable, timeout: float = 120) -> int:
    """SIGKILL ``proc`` once it holds inside a trial (``hold_file`` written); return the count
    of complete records."""
    wait_until(hold_file.exists, timeout, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return count_records(results())


JOB = [*SLOW_TRIALS, "trials=5"]


@pytest.fixture(scope="module")
def reference_job(tmp_path_factory, module_cache) -> dict[str, dict]:
    """The records of one uninterrupted JOB run, by trial id."""
    run_dir = tmp_path_factory.mktemp("reference")
    result = run_frogs(*JOB, f"cache_dir={module_cache}", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    expected = by_trial(read_records(run_dir / "results.jsonl"))
    assert len(expected) == 5
    return expected


@pytest.mark.parametrize("seed", [0, 1])
def test_killed_job_resumes_to_the_uninterrupted_records(tmp_path, cache, reference_job, seed):
    rng = random.Random(seed)
    run_dir = tmp_path / "killed"
    args = [*JOB, f"cache_dir={cache}", f"hydra.run.dir={run_dir}"]
    results = run_dir / "results.jsonl"
    before = rng.randint(1, 3)
    hold = tmp_path / "holding"
    proc = start_frogs(*args, log=tmp_path / "killed.out", hold=(hold, before))
    done = kill_held(proc, hold, lambda: [results])
    assert done == before
    read_records(results)  # only whole lines survive the kill

    relaunch = run_frogs(*args)
    assert relaunch.returncode == 0, relaunch.stderr
    assert f"resuming: {done} of 5 trials already recorded" in (run_dir / "cli.log").read_text()
    assert by_trial(read_records(results)) == reference_job

    again = run_frogs(*args)
    assert again.returncode == 0 and "no new trials" in again.stdout
    assert len(read_records(results)) == 5


def test_job_killed_while_pretraining_rebuilds_and_finishes(tmp_path, reference_job):
    """A kill inside the cold-cache build leaves no entry that a relaunch would trust."""
    cache = tmp_path / "cache"
    args = [*JOB, f"cache_dir={cache}", f"hydra.run.dir={tmp_path / 'run'}"]
    hold = tmp_path / "pretraining"
    proc = start_frogs(*args, log=tmp_path / "killed.out", hold_pretraining=hold)
    wait_until(hold.exists, 120, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not list(cache.glob("models/*.json")), "a killed build left a cache entry"

    relaunch = run_frogs(*args)
    assert relaunch.returncode == 0, relaunch.stderr
    assert by_trial(read_records(tmp_path / "run" / "results.jsonl")) == reference_job


def sweep_results(sweep_dir: Path) -> list[Path]:
    return sorted(sweep_dir.glob("**/results.jsonl"))


def test_killed_multirun_resumes_every_job(tmp_path, cache):
    """Basic launcher, three jobs in one process: kill mid-sweep, relaunch into the same dir."""
    rng = random.Random(3)
    sweep = [
        "-m",
        *SLOW_TRIALS,
        "trials=2",
        "attack.opacity=0.0,0.1,0.2",
        f"cache_dir={cache}",
    ]
    reference = run_frogs(*sweep, f"hydra.sweep.dir={tmp_path / 'reference'}")
    assert reference.returncode == 0, reference.stderr
    expected_files = sweep_results(tmp_path / "reference")
    assert len(expected_files) == 3
    expected = by_trial([r for f in expected_files for r in read_records(f)])

    sweep_dir, hold = tmp_path / "killed", tmp_path / "holding"
    before = rng.randint(2, 4)
    proc = start_frogs(
        *sweep, f"hydra.sweep.dir={sweep_dir}", log=tmp_path / "killed.out", hold=(hold, before)
    )
    done = kill_held(proc, hold, lambda: sweep_results(sweep_dir))
    assert done == before

    relaunch = run_frogs(*sweep, f"hydra.sweep.dir={sweep_dir}")
    assert relaunch.returncode == 0, relaunch.stderr
    files = sweep_results(sweep_dir)
    assert len(files) == 3
    per_job = [read_records(f) for f in files]
    assert all(len(records) == 2 for records in per_job)
    assert by_trial([r for records in per_job for r in records]) == expected
