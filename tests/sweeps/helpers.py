"""Helpers for the sweep tests: run ``frogs`` sweeps as a user types them, read their records and
their ``# smoke:`` lines, and get a SLURM cluster (started with the shared script when none
answers)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import whole_records

REPO = Path(__file__).resolve().parents[2]
SWEEPS_DIR = REPO / "sweeps"
SWEEPS = sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))
SLURM_SCRIPTS = REPO.parent / "shared" / "slurm"
SHARED_DATA = REPO.parent / "shared" / "data"
SMOKE_LINE = re.compile(r"^# smoke: (.+)$", re.MULTILINE)
SMOKE_JOBS = re.compile(r"^# Smoke test on a CPU, (\d+) jobs", re.MULTILINE)


def sweep_env() -> dict[str, str]:
    """The user's environment, with CIFAR-10 found beside the checkout when not configured."""
    env = {k: v for k, v in os.environ.items() if k != "FROGS_CACHE"}
    if "FROGS_DATA" not in env and (SHARED_DATA / "cifar-10-batches-py").is_dir():
        env["FROGS_DATA"] = str(SHARED_DATA)
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def sweep_command(name: str, *overrides: str) -> list[str]:
    """``python -m frogs --config-dir sweeps --config-name NAME OVERRIDES`` (the documented way)."""
    return [
        sys.executable,
        "-m",
        "frogs",
        "--config-dir",
        str(SWEEPS_DIR),
        "--config-name",
        name,
        *overrides,
    ]


def run_sweep(
    name: str, sweep_dir: Path, cache: Path, *overrides: str, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run one sweep to the end into ``sweep_dir``; return the finished process (with timing)."""
    command = sweep_command(name, f"hydra.sweep.dir={sweep_dir}", f"cache_dir={cache}", *overrides)
    started = time.perf_counter()
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=sweep_env(), cwd=REPO
    )
    result.wall_s = time.perf_counter() - started  # type: ignore[attr-defined]
    return result


def results_files(sweep_dir: Path) -> list[Path]:
    return sorted(sweep_dir.rglob("results.jsonl"))


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p.parent.parent for p in sweep_dir.rglob(".hydra/config.yaml"))


def read_records(sweep_dir: Path) -> list[dict]:
    """Every record of every job of a sweep; each line must be whole."""
    return [record for path in results_files(sweep_dir) for record in whole_records(path)]


def smoke_overrides(name: str) -> list[str]:
    """The overrides of a study's ``# smoke:`` line: appended to its command, they make its small
    CPU grid (docs/sweeps.md). Every study file must have exactly one."""
    found = SMOKE_LINE.findall((SWEEPS_DIR / f"{name}.yaml").read_text())
    assert len(found) == 1, f"sweeps/{name}.yaml needs one '# smoke: OVERRIDES' line, has {found}"
    return shlex.split(found[0])


def smoke_job_count(name: str) -> int:
    """The job count the comment above a study's ``# smoke:`` line states."""
    found = SMOKE_JOBS.search((SWEEPS_DIR / f"{name}.yaml").read_text())
    assert found, f"sweeps/{name}.yaml: say '# Smoke test on a CPU, N jobs' above its smoke line"
    return int(found.group(1))


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, (
        f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
    )


def cifar10_available() -> bool:
    root = Path(sweep_env().get("FROGS_DATA", "~/.cache/frogs/data")).expanduser()
    return (root / "cifar-10-batches-py").is_dir()


requires_cifar10 = pytest.mark.skipif(
    not cifar10_available() and not os.environ.get("CI"),
    reason="CIFAR-10 missing: set FROGS_DATA to a folder holding cifar-10-batches-py",
)


# ------------------------------------------------------------------------------------ SLURM


def _sinfo_answers() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        done = subprocess.run(["sinfo", "-h"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


def _slurm_unavailable_reason() -> str | None:
    """Why a cluster cannot be had here, or None when one is (or can be started)."""
    if _sinfo_answers():
        return None
    if os.geteuid() != 0:
        return "no SLURM cluster answers and starting one needs root"
    script = SLURM_SCRIPTS / "start-local-slurm.sh"
    if not script.is_file():
        return f"no SLURM cluster answers and {script} is missing"
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        return "no SLURM cluster answers and the slurm packages cannot be installed (no apt-get)"
    return None


def ensure_slurm_cluster() -> str:
    """A SLURM cluster that answers ``sinfo``; started with the shared script when needed.

    Skips (with the reason) only outside CI; with ``CI`` set a missing cluster is a failure.
    Returns the partition to submit to.
    """
    reason = _slurm_unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"SLURM required in CI: {reason}")
        pytest.skip(reason)
    if not _sinfo_answers():
        env = {**os.environ, "SLURM_LOCAL_CPUS": os.environ.get("SLURM_LOCAL_CPUS", "8")}
        started = subprocess.run(
            ["bash", str(SLURM_SCRIPTS / "start-local-slurm.sh")],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        if started.returncode != 0 or not _sinfo_answers():
            message = f"could not start SLURM:\n{started.stdout[-3000:]}\n{started.stderr[-3000:]}"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
    partition = subprocess.run(
        ["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=20
    ).stdout.split()
    default = [p[:-1] for p in partition if p.endswith("*")]
    return (default or [p.rstrip("*") for p in partition])[0]


def slurm_overrides(partition: str, *extra: str) -> list[str]:
    """The SLURM launcher sized for the local test cluster (1 CPU, 2 GB per job)."""
    return [
        "hydra/launcher=slurm",
        f"hydra.launcher.partition={partition}",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=2",
        "hydra.launcher.timeout_min=15",  # > 10: submitit then tells preemption from time-out
        *extra,
    ]
