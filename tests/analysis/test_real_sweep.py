"""The analysis CLI on records that a real (tiny) frogs sweep wrote."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

pytestmark = pytest.mark.slow


def test_cli_on_a_real_frogs_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    command = [
        sys.executable,
        "-m",
        "frogs",
        "-m",
        "dataset=synthetic",
        "debug=smoke",
        "dataset.train_per_class=null",
        "trials=2",
        "attack.num_poisons=1,3",
        "save_poisons=true",
        "save_features=true",
        "feature_sample=8",
        f"hydra.sweep.dir={sweep}",
        f"cache_dir={tmp_path / 'cache'}",
    ]
    made = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-3000:]
    out = tmp_path / "analysis"
    result = subprocess.run(
        [sys.executable, "-m", "analysis", str(sweep), "--out", str(out), "--report"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(out / "success.csv")
    assert sorted(table["attack.num_poisons"]) == [1, 3]
    assert table["n"].tolist() == [2, 2]
    assert ((table["ci_low"] <= table["rate"]) & (table["rate"] <= table["ci_high"])).all()
    assert (out / "report.html").stat().st_size > 10_000
    assert list(out.glob("*.png")), "no figure written"
    assert list(out.glob("*.pdf")), "figures come as PDF too"
