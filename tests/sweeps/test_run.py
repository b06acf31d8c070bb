"""Sweeps run end to end under their smoke grids (basic or joblib launcher), and relaunching one
fills exactly its gaps: nothing when it is finished, the deleted trials when some are missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from frogs.store.status import sweep_status, totals
from tests.sweeps.helpers import (
    SWEEPS,
    assert_ok,
    job_dirs,
    read_records,
    requires_cifar10,
    results_files,
    run_sweep,
    smoke_overrides,
)

pytestmark = pytest.mark.slow

# Overrides that keep two jobs of each sweep's smoke grid.
SHRINK = {
    "e2e_poison_count": ["pair=airplane_frog"],
    "e2e_ablation": ["ablation=single_base,no_optimize"],
    "attacks_vs_defenses": ["defense=activation_clustering"],
}
LAUNCHERS = {"basic": [], "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]}
# A synthetic variant of the one-shot sweep: 2 jobs x 2 trials in seconds.
SYNTHETIC = [
    "debug=sweep_smoke",
    "dataset=synthetic",
    "dataset.train_per_class=null",
    "trials=2",
    "trial_offset=0,2",  # jobs of 2 trials: offsets 2 apart
]


def all_done(sweep_dir: Path, jobs: int, trials_per_job: int = 1) -> list[dict]:
    """Assert ``jobs`` job folders, each with every trial recorded once and ok."""
    records = read_records(sweep_dir)
    assert len(job_dirs(sweep_dir)) == jobs
    assert len(records) == jobs * trials_per_job
    assert len({r["trial_id"] for r in records}) == len(records)
    assert {r["status"] for r in records} == {"ok"}, [r.get("error") for r in records]
    total = totals(sweep_status(sweep_dir))
    assert (total.expected, total.ok, total.not_started) == (len(records), len(records), 0)
    return records


#: Each sweep file runs under one launcher, the two alternating over the sorted files, so both
#: launchers run real sweeps (the cold-cache case below needs joblib on e2e_poison_count).
LAUNCHER_OF = {name: sorted(LAUNCHERS)[i % len(LAUNCHERS)] for i, name in enumerate(SWEEPS)}


@pytest.mark.parametrize(
    ("name", "launcher"),
    [
        pytest.param(n, LAUNCHER_OF[n], marks=[] if n == "transfer_oneshot" else requires_cifar10)
        for n in SWEEPS
    ],
)
def test_each_sweep_runs_its_smoke_grid(name, launcher, tmp_path, sweep_cache):
    """Every sweep file, two jobs of its smoke grid, sequentially (basic) or in parallel
    (joblib), the launchers alternating over the files.

    One case starts from a cold cache with two jobs at once: the clean model is built once.
    """
    cold = launcher == "joblib" and name == "e2e_poison_count"
    cache = tmp_path / "cold-cache" if cold else sweep_cache
    sweep_dir = tmp_path / name
    overrides = [*smoke_overrides(name), *SHRINK.get(name, []), *LAUNCHERS[launcher]]
    result = run_sweep(name, sweep_dir, cache, *overrides)
    assert_ok(result)
    records = all_done(sweep_dir, jobs=2)
    assert all(r["slurm_job_id"] is None for r in records)
    print(f"{name} smoke: 2 jobs in {result.wall_s:.1f} s ({launcher} launcher)")
    if cold:
        logs = [path.read_text() for path in sorted(sweep_dir.rglob("*.log"))]
        assert len(logs) == 2
        assert sum(log.count("cache miss models/") for log in logs) == 1, "built once"
        assert sum("cache hit models/" in log for log in logs) == 1
        assert len(list((cache / "models").glob("*.pt"))) == 1


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory) -> tuple[Path, Path, float]:
    """A finished synthetic one-shot sweep (2 jobs x 2 trials), its cache and its wall time."""
    root = tmp_path_factory.mktemp("finished")
    sweep_dir, cache = root / "sweep", root / "cache"
    result = run_sweep("transfer_oneshot", sweep_dir, cache, *SYNTHETIC)
    assert_ok(result)
    all_done(sweep_dir, jobs=2, trials_per_job=2)
    return sweep_dir, cache, result.wall_s


def copy_of(finished: tuple[Path, Path, float], tmp_path: Path) -> Path:
    shutil.copytree(finished[0], tmp_path / "sweep")
    return tmp_path / "sweep"


def test_relaunching_a_finished_sweep_does_no_work(finished_sweep, tmp_path):
    sweep_dir = copy_of(finished_sweep, tmp_path)
    before = {p: p.read_bytes() for p in results_files(sweep_dir)}
    again = run_sweep("transfer_oneshot", sweep_dir, finished_sweep[1], *SYNTHETIC)
    assert_ok(again)
    assert {p: p.read_bytes() for p in results_files(sweep_dir)} == before
    output = again.stdout + again.stderr
    assert output.count("all 2 trials of this job are already recorded") >= 2
    assert "cache hit" not in output and "cache miss" not in output, "no data or model loaded"
    assert again.wall_s < finished_sweep[2]


def test_relaunching_after_losing_records_redoes_exactly_those(finished_sweep, tmp_path):
    sweep_dir = copy_of(finished_sweep, tmp_path)
    original = {r["trial_id"]: r for r in read_records(sweep_dir)}
    first, second = results_files(sweep_dir)
    kept_line, _lost = first.read_text().splitlines(True)
    first.write_text(kept_line)  # job 1 lost its second trial
    second.unlink()  # job 2 lost both
    lost = {r["trial_id"] for r in read_records(sweep_dir)} ^ set(original)
    assert len(lost) == 3
    status = {row.job: row for row in sweep_status(sweep_dir)}
    assert sorted((row.ok, row.not_started) for row in status.values()) == [(0, 2), (1, 1)]

    again = run_sweep("transfer_oneshot", sweep_dir, finished_sweep[1], *SYNTHETIC)
    assert_ok(again)
    assert first.read_text().startswith(kept_line)  # the kept record is never rewritten
    records = read_records(sweep_dir)
    assert sorted(r["trial_id"] for r in records) == sorted(original)  # each trial exactly once
    redone = [r for r in records if r["trial_id"] in lost]
    assert len(redone) == 3 and {r["status"] for r in redone} == {"ok"}
    for record in redone:  # same trial: same target and bases (seeded streams)
        old = original[record["trial_id"]]
        assert (record["target_index"], record["base_indices"]) == (
            old["target_index"],
            old["base_indices"],
        )
    assert totals(sweep_status(sweep_dir)).not_started == 0
