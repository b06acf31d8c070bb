"""Fixtures of the sweep suite; the helpers (shared with tests/reliability) are in helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sweeps.helpers import ensure_slurm_cluster


@pytest.fixture(scope="session")
def sweep_cache(tmp_path_factory) -> Path:
    """One clean-model cache for the sweep suite: each clean model is pretrained once."""
    return tmp_path_factory.mktemp("sweep-cache")


@pytest.fixture(scope="session")
def slurm_partition() -> str:
    """The partition of a running SLURM cluster (skip outside CI when none can be had)."""
    return ensure_slurm_cluster()
