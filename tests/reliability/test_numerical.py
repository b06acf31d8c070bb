"""NaN/Inf in crafting or retraining fails that trial, with the reason recorded; the job goes on."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from frogs.attacks.feature_collision import ATTACKS
from frogs.config.settings import updated
from frogs.experiment.job import Trials
from frogs.experiment.run import run
from frogs.victims import retrainer
from frogs.victims.transfer import HeadRetrainer
from tests.reliability.conftest import (
    TINY,
    read_records,
    run_frogs,
    tiny_settings,
)


@pytest.fixture
def settings(tmp_path, cache):
    return tiny_settings("trials=3", f"cache_dir={cache}")


def fail_once(monkeypatch, owner, name, break_result):
    """Patch ``owner.name`` so that its second call's result is broken by ``break_result``."""
    original = owner[name] if isinstance(owner, dict) else getattr(owner, name)
    calls = []

    def patched(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append(1)
        return break_result(result) if len(calls) == 2 else result

    if isinstance(owner, dict):
        monkeypatch.setitem(owner, name, patched)
    else:
        monkeypatch.setattr(owner, name, patched)


def assert_only_trial_1_failed(records, *reasons: str) -> None:
    assert [r["status"] for r in records] == ["ok", "failed", "ok"]
    failed = records[1]
    assert failed["trial_index"] == 1 and failed["success"] is None
    assert failed["target_class"] == "c0" and len(failed["base_indices"]) == 1
    for reason in reasons:
        assert reason in failed["error"]
    assert all(r["error"] is None for r in (records[0], records[2]))


def test_nan_poisons_fail_only_their_trial(tmp_path, settings, monkeypatch):
    def nan_poisons(crafted):
        crafted.poisons.fill_(math.nan)
        return crafted

    fail_once(monkeypatch, ATTACKS._items, "feature_collision", nan_poisons)
    run(settings, tmp_path / "run")
    records = read_records(tmp_path / "run" / "results.jsonl")
    assert_only_trial_1_failed(records, "NumericalError", "poisons contain NaN or Inf")


def test_nan_retrained_victim_fails_only_its_trial(tmp_path, settings, monkeypatch):
    def nan_head(poisoned):
        poisoned.predict.head.weight.data.fill_(math.inf)
        return poisoned

    fail_once(monkeypatch, HeadRetrainer, "retrain", nan_head)
    run(settings, tmp_path / "run")
    records = read_records(tmp_path / "run" / "results.jsonl")
    assert_only_trial_1_failed(records, "NumericalError", "victim outputs NaN or Inf")


def test_non_finite_outcome_field_fails_its_trial_not_the_job(tmp_path, settings, monkeypatch):
    """A NaN that reaches the record (here the boundary angle) must not crash the JSON writer."""
    original = retrainer.boundary_angle_deg
    angles = iter([None] * settings.victim.epochs + [math.nan] * settings.victim.epochs)

    def angle(*args):
        value = next(angles, None)
        return original(*args) if value is None else value

    monkeypatch.setattr(retrainer, "boundary_angle_deg", angle)
    run(settings, tmp_path / "run")
    records = read_records(tmp_path / "run" / "results.jsonl")
    assert_only_trial_1_failed(records, "NumericalError", "angular_deviation_deg")


def test_training_loss_overflow_in_retraining_is_a_failed_trial(tmp_path, settings):
    """A real overflow: end-to-end retraining with a step size far beyond float32's range."""
    settings = replace(settings, victim=replace(settings.victim, name="end_to_end", lr=1e30))
    # c2: a class the 1-epoch smoke model classifies correctly
    settings = updated(settings, {"dataset.target_class": "c2"})
    run(settings, tmp_path / "run")
    records = read_records(tmp_path / "run" / "results.jsonl")
    assert [r["status"] for r in records] == ["failed"] * 3
    assert all("training loss became nan" in r["error"] for r in records)


@pytest.mark.slow
def test_crafting_overflow_through_the_cli_records_failed_trials(tmp_path, cache):
    """β0 so large that the proximal step is inf/inf: every trial fails, the job exits 0."""
    result = run_frogs(
        *TINY,
        "trials=2",
        "attack.constraint=l2",  # the proximal step runs only under the L2 budget
        "attack.eps=null",
        "attack.beta0=1e45",
        f"cache_dir={cache}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "success 0/0 (2 failed)" in result.stdout
    records = read_records(tmp_path / "run" / "results.jsonl")
    assert [r["status"] for r in records] == ["failed", "failed"]
    for record in records:
        assert "NumericalError: feature distance became non-finite" in record["error"]
        assert record["target_class"] == "c0" and record["base_class"] == "c1"


def test_a_trial_whose_planning_fails_is_recorded_failed(tmp_path, settings, monkeypatch):
    """Planning (choosing the bases) raising is that trial's failure: the record says so, with
    no bases, and the job goes on."""
    original = Trials.bases

    def bases(self, index, target):
        if index == 1:
            raise RuntimeError("no bases for this target")
        return original(self, index, target)

    monkeypatch.setattr(Trials, "bases", bases)
    run(settings, tmp_path / "run")
    records = read_records(tmp_path / "run" / "results.jsonl")
    assert [r["status"] for r in records] == ["ok", "failed", "ok"]
    assert records[1]["base_indices"] is None and "no bases for this target" in records[1]["error"]
    assert isinstance(records[1]["target_index"], int)
