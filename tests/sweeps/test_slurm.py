"""A real sweep through ``hydra/launcher=slurm`` on a SLURM cluster (the local one-node cluster in
CI, started by the shared script when ``sinfo`` does not answer).

Skips only outside CI, when not root or the slurm packages/cluster cannot be had; with ``CI``
set a missing cluster fails the test.
"""

from __future__ import annotations

import pytest

from frogs.store.status import sweep_status, totals
from tests.sweeps.helpers import (
    assert_ok,
    job_dirs,
    read_records,
    run_sweep,
    slurm_overrides,
    smoke_overrides,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_a_sweep_runs_every_job_as_a_slurm_job(slurm_partition, tmp_path, sweep_cache):
    sweep_dir = tmp_path / "transfer_oneshot"
    smoke = smoke_overrides("transfer_oneshot")
    result = run_sweep(
        "transfer_oneshot", sweep_dir, sweep_cache, *smoke, *slurm_overrides(slurm_partition)
    )
    assert_ok(result)
    records = read_records(sweep_dir)
    assert len(job_dirs(sweep_dir)) == 2 and len(records) == 2, "every record arrived"
    assert {r["status"] for r in records} == {"ok"}
    job_ids = [r["slurm_job_id"] for r in records]
    assert all(job_ids) and len(set(job_ids)) == 2, f"each job its own SLURM job: {job_ids}"
    assert (sweep_dir / ".submitit").is_dir()
    total = totals(sweep_status(sweep_dir))
    assert (total.expected, total.ok, total.not_started) == (2, 2, 0)
    print(f"transfer_oneshot smoke: 2 SLURM jobs in {result.wall_s:.1f} s")
