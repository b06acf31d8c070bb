"""The prepared paper-scale GPU script (scripts/paper_scale_e2e.sh), dry-run at tiny sizes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import whole_records

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_dry_run_pretrains_then_records_claim_5_trials(tmp_path, cifar10_root):
    env = {
        **os.environ,
        "FROGS_DATA": str(cifar10_root),
        "DRY_RUN": "1",
        "FROGS": f"{sys.executable} -m frogs",
    }
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "paper_scale_e2e.sh"), str(tmp_path / "out"), "600"],
        capture_output=True, text=True, timeout=900, env=env, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "alexnet_cifar-cifar10-paper.pt").is_file()
    files = list((tmp_path / "out" / "results" / "e2e_poison_count_paper").glob("*/results.jsonl"))
    assert len(files) == 1
    (record,) = whole_records(files[0])
    assert record["status"] == "ok", record.get("error")
    assert record["attack.recipe"] == "authors_e2e"
    assert record["clean_model_source"] == "checkpoint"
    assert record["attack.opacity"] == 0.3 and record["attack.iters"] == 3  # dry-run sizes
    assert record["victim.lr"] == pytest.approx(1.85e-5)
