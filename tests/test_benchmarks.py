"""Smoke test of ``python -m benchmarks``: the tiniest run writes its figures (never timings)."""

from __future__ import annotations

import json
import math

import pytest
import torch

import benchmarks.run
from benchmarks.run import Sizes, main

TINY = Sizes(1, (1, 2), 1, 1, (2,), 16, 1, 1, 1, 200)


def test_tiny_run_writes_positive_ratios(tmp_path, monkeypatch, capsys):
    pytest.importorskip("art")
    monkeypatch.setattr(benchmarks.run, "QUICK", TINY)
    out = tmp_path / "bench.json"
    assert main(["--quick", "--only", "craft,e2e,amp,analysis", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["amp_auto"] is figures["amp_native_bf16"]
    for key in ("craft_vs_bare", "craft_vs_art", "e2e_vs_bare", "amp_vs_fp32_bare"):
        assert isinstance(figures[key], float) and math.isfinite(figures[key])
        assert figures[key] > 0
    assert "analysis_error" not in figures, figures.get("analysis_error")
    assert figures["analysis_s"] > 0
    assert figures["machine"]["torch"] == torch.__version__
    printed = capsys.readouterr().out
    assert "| craft, 2 poisons |" in printed and "machine:" in printed
    assert "| e2e retrain, bf16 autocast (" in printed


def test_unknown_benchmark_is_a_one_line_error(capsys):
    assert main(["--only", "craft,nope"]) == 2
    assert "--only nope is not allowed" in capsys.readouterr().err
