"""Fixtures of the sweep suite; the helpers (shared with tests/reliability) are in helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sweeps.helpers import ensure_slurm_cluster


@pytest.fixture(scope="module")
def sweep_cache(module_cache: Path) -> Path:
    """One cache for a sweep file's tests (a copy of the session's warm cache): the sweeps on one
    dataset share their smoke clean model, pretrained once."""
    return module_cache


@pytest.fixture(scope="session")
def slurm_partition() -> str:
    """The partition of a running SLURM cluster (skip outside CI when none can be had)."""
    return ensure_slurm_cluster()
