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


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["attack.opacity=2"], "attack.opacity=2"),
        (["dataset.base_class=c0"], "both 'c0'"),
        (["dataset.target_class=zebra"], "dataset.target_class='zebra' is not a class"),
        (["attack.num_poisons=500"], "attack.num_poisons=500"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, overrides, message):
    result = frogs(tmp_path, *SYNTHETIC, *overrides)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("frogs: error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr
