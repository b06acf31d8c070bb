"""A SLURM job that is preempted or requeued mid-sweep resumes at its first unfinished trial.

Two real interruptions on a real (local) cluster, while the job is between its first and last
trial: (a) preemption / time limit as SLURM delivers it (SIGTERM, then the USR2 that submitit
turns into the launcher's ``checkpoint`` and a requeue of the same job), and (b) an
administrator's ``scontrol requeue`` (SIGTERM, SIGKILL, same job id queued again). Either way
the job runs again, skips the trials already recorded and ends with every trial exactly once.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import frogs.store.records
from tests.reliability.conftest import TINY
from tests.sweeps.helpers import (
    REPO,
    ensure_slurm_cluster,
    read_records,
    slurm_overrides,
    sweep_env,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TRIALS = 4
# A small synthetic job whose trials take seconds, so the interruption lands between trials.
JOB = [
    *TINY,
    f"trials={TRIALS}",
    "attack.iters=1500",  # a few seconds per trial
    "victim.epochs=20",
]


@pytest.fixture(scope="module")
def partition() -> str:
    return ensure_slurm_cluster()


def records_in(results: Path) -> int:
    return len(frogs.store.records.read_records(results).records)


def interrupt(job_id: str, how: str) -> None:
    if how == "preempt":  # what SLURM sends on preemption / near the time limit
        subprocess.run(["scancel", "--signal=TERM", job_id], check=True, timeout=30)
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)
    else:
        subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=30)


def sacct_states(job_id: str) -> list[str]:
    done = subprocess.run(
        ["sacct", "-D", "-X", "-n", "-P", "-o", "State", "-j", job_id],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout.split()


@pytest.mark.parametrize("how", ["preempt", "requeue"])
def test_requeued_job_resumes_and_records_every_trial_once(how, partition, tmp_path):
    sweep_dir = tmp_path / "sweep"
    command = [
        sys.executable,
        "-m",
        "frogs",
        "-m",
        *JOB,
        f"cache_dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={sweep_dir}",
        "hydra.sweep.subdir=job",
        *slurm_overrides(partition, "hydra.launcher.signal_delay_s=30"),
    ]
    log = tmp_path / "launcher.log"
    with open(log, "w") as out:
        launcher = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=sweep_env(), cwd=REPO
        )
    try:
        results = sweep_dir / "job" / "results.jsonl"
        deadline = time.monotonic() + 300
        while records_in(results) < 1:
            assert launcher.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the job recorded no trial in 300 s"
            time.sleep(0.1)
        first = frogs.store.records.read_records(results).records[0]
        job_id = first["slurm_job_id"]
        assert job_id, "the trial did not run under SLURM"
        before = records_in(results)
        assert before < TRIALS, "the job finished before it could be interrupted; slow it down"
        interrupt(job_id, how)
        launcher.wait(timeout=420)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 0, log.read_text()[-4000:]

    records = read_records(sweep_dir)
    ids = [r["trial_id"] for r in records]
    assert len(ids) == len(set(ids)) == TRIALS, f"each trial exactly once: {ids}"
    assert sorted(r["trial_index"] for r in records) == list(range(TRIALS))
    assert {r["status"] for r in records} == {"ok"}
    assert {r["slurm_job_id"] for r in records} == {job_id}, "the same job, requeued"
    job_log = (sweep_dir / "job" / "cli.log").read_text()
    assert "resuming:" in job_log, "the requeued job must skip the trials already recorded"
    states = sacct_states(job_id)
    if states:  # accounting on (the shared script's default)
        assert "REQUEUED" in states or "PREEMPTED" in states, states
    if how == "preempt":
        submitit_logs = "".join(p.read_text() for p in (sweep_dir / ".submitit").rglob("*.out"))
        assert "this job is preempted" in submitit_logs and "Requeued job" in submitit_logs
