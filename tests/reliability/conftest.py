"""Helpers for the fault suite: run the real ``frogs`` command, read and compare its records."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

import frogs.store.records
from tests.conftest import TINY, copy_cache, tiny_settings  # noqa: F401 - the fault tests' names
from tests.conftest import whole_records as read_records  # noqa: F401 - the fault tests' name

REPO = Path(__file__).resolve().parents[2]

# Fields that legitimately differ between two runs of the same trial.
# clean_model_source says whether this job trained the shared clean model or found it cached;
# poisons_reused whether its poisons were crafted by this trial or found in the shared cache.
VOLATILE = {
    "poisons_reused",
    "craft_s",
    "retrain_s",
    "eval_s",
    "defend_s",
    "finished_at",
    "host",
    "slurm_job_id",
    "clean_model_source",
}


def frogs_env() -> dict[str, str]:
    """The user's environment minus data/cache overrides; one thread per process."""
    env = {k: v for k, v in os.environ.items() if k not in ("FROGS_DATA", "FROGS_CACHE")}
    env.pop("HYDRA_FULL_ERROR", None)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def frogs_command(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "frogs", *overrides]


def run_frogs(*overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m frogs OVERRIDES`` to the end, from the repository root."""
    return subprocess.run(
        frogs_command(*overrides),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=frogs_env(),
        cwd=REPO,
    )


def start_frogs(
    *overrides: str,
    log: Path,
    hold: tuple[Path, int] | None = None,
    hold_pretraining: Path | None = None,
) -> subprocess.Popen:
    """Start ``python -m frogs OVERRIDES`` in the background, output to ``log``.

    ``hold=(PATH, N)``: run it through ``held_frogs.py``, whose trial N+1 writes PATH when it
    starts and then waits to be killed (a kill point the test controls). ``hold_pretraining=PATH``:
    the same inside the clean model's pretraining."""
    handle = open(log, "w")  # noqa: SIM115 - the child owns it; closed when the test ends
    command, env = frogs_command(*overrides), frogs_env()
    if hold is not None or hold_pretraining is not None:
        command = [sys.executable, str(Path(__file__).with_name("held_frogs.py")), *overrides]
    if hold is not None:
        env["FROGS_TEST_HOLD"] = f"{hold[0]}:{hold[1]}"
    if hold_pretraining is not None:
        env["FROGS_TEST_HOLD_PRETRAIN"] = str(hold_pretraining)
    return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=REPO)


def count_records(paths: Sequence[Path]) -> int:
    """Records written so far (a line still being written is not counted)."""
    return sum(len(frogs.store.records.read_records(path).records) for path in paths)


def outcome(record: dict) -> dict:
    """A record minus timings, finish time and host: what two runs of one trial must share."""
    return {k: v for k, v in record.items() if k not in VOLATILE}


def by_trial(records: list[dict]) -> dict[str, dict]:
    """Records keyed by trial_id, asserting that no trial is recorded twice."""
    ids = [r["trial_id"] for r in records]
    assert len(ids) == len(set(ids)), f"duplicated trial records: {sorted(ids)}"
    return {r["trial_id"]: outcome(r) for r in records}


def wait_until(condition, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Poll ``condition`` until true; fail if the process ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"process ended (rc={proc.returncode}) before the fault could be injected")
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting to inject the fault")
        time.sleep(0.02)


def error_lines(result: subprocess.CompletedProcess, prefix: str = "frogs: error:") -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith(prefix)]


def assert_one_clear_error(
    result: subprocess.CompletedProcess, *needles: str, prefix: str = "frogs: error:"
) -> str:
    """Exit status 2, exactly one error line containing every needle, no traceback."""
    output = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 2, output
    lines = error_lines(result, prefix)
    assert len(lines) == 1, output
    for needle in needles:
        assert needle in lines[0], output
    assert "Traceback" not in result.stderr + result.stdout, output
    return lines[0]
