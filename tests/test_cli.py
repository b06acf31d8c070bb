"""The ``frogs`` command as a user types it (subprocess, temp dirs)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import whole_records

SYNTHETIC = ["dataset=synthetic", "debug=smoke", "dataset.train_per_class=null"]


def frogs(tmp_path, *overrides: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "frogs",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"cache_dir={tmp_path / 'cache'}",
        *overrides,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_runs_a_job_and_prints_the_table(tmp_path):
    result = frogs(tmp_path, *SYNTHETIC, "trials=2", "save_poisons=true")
    assert result.returncode == 0, result.stderr
    assert "success" in result.stdout and "records:" in result.stdout
    records = whole_records(tmp_path / "run" / "results.jsonl")
    assert [record["status"] for record in records] == ["ok", "ok"]
    assert len(list((tmp_path / "run" / "poisons").glob("*.png"))) == 2
    again = frogs(tmp_path, *SYNTHETIC, "trials=2")
    assert again.returncode == 0 and "no new trials" in again.stdout
