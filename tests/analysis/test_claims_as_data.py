"""The replication report's claims are data: each claim names its figure, scenario and role, its
verdict is a ``Verdict`` (never parsed back from text), budgets are numbers, and the report
regenerates byte-identical from the same records. On synthetic transfer and end-to-end records."""

from __future__ import annotations

import dataclasses

import pytest

from analysis.claims import (
    CLAIMS,
    FIGURE_ANGLES,
    FIGURE_BUDGET,
    FIGURE_E2E,
    FIGURE_OVERLAP,
    FIGURE_POISONS,
    Verdict,
)
from analysis.replication import budget_columns, measure_claims, write_replication

FIGURES = {FIGURE_ANGLES, FIGURE_BUDGET, FIGURE_E2E, FIGURE_OVERLAP, FIGURE_POISONS}


def _transfer(record, index, *, success, eps_255=8.0, pair=("bird", "dog"), classes=2, **extra):
    target, base = pair
    return record(
        index,
        trial_id=f"t{index:05d}-{eps_255}-{classes}",
        scenario="transfer",
        victim="transfer",
        dataset="cifar10",
        target_class=target,
        base_class=base,
        task_classes=[target, base, "cat"][:classes],
        pretrain_classes="without_task",
        attack__num_poisons=1,
        attack__optimize=True,
        constraint="linf",
        eps=eps_255 / 255,
        eps_255=eps_255,
        success=success,
        angular_deviation_deg=20.0 + index % 3,
        angular_deviation_per_epoch=[15.0, 19.0, 20.0 + index % 3],
        clean_train_acc=0.966,
        clean_test_acc=0.787,
        feat_dist_before=30.0,
        feat_dist_after=12.0,
        image_values=3072,
        **extra,
    )


@pytest.fixture
def frame(record, frame_of):
    """100 one-shot transfer trials at each of L-inf 2 and 8/255 (60 and 95 successes), the
    pair's two directions alternating."""
    pairs = (("dog", "bird"), ("bird", "dog"))
    ladder = [(2.0, i, i < 60) for i in range(100)] + [(8.0, i, i < 95) for i in range(100)]
    return frame_of(
        _transfer(record, n, success=won, eps_255=eps_255, pair=pairs[i % 2])
        for n, (eps_255, i, won) in enumerate(ladder)
    )


def _claim(results, key):
    return next(r for r in results if r.claim.key == key)


def test_every_claim_names_a_figure_a_scenario_and_only_one_sets_the_budget():
    assert {claim.figure for claim in CLAIMS} <= FIGURES
    assert {claim.scenario for claim in CLAIMS} == {"transfer", "end_to_end"}
    assert [claim.key for claim in CLAIMS if claim.sets_budget] == ["1"]
    assert len({c.key for c in CLAIMS}) == len(CLAIMS)
    # every claim either assumes its paper-scale trial time or scales it from end-to-end records
    for claim in CLAIMS:
        assert (claim.assumed_paper_trial_s is None) == (claim.scenario == "end_to_end")


def test_verdicts_are_values_and_open_their_text(frame):
    results = measure_claims(frame)
    for result in results:
        assert isinstance(result.verdict, Verdict)
        assert result.verdict_text.startswith(result.verdict.value)
    one = _claim(results, "1")
    # 95/100 at the headline budget (the lowest with >= 90 %: 8/255): the paper's 100 % is
    # outside the Wilson interval (90-98 %)
    assert one.rate.successes == 95 and one.rate.n == 100
    assert one.verdict is Verdict.NOT_REPRODUCED and one.measured is Verdict.NOT_REPRODUCED
    assert "why not reproduced here" in "\n".join(one.details)
    two = _claim(results, "2")
    assert two.verdict is Verdict.NOT_REPRODUCED and "App. C's 100 %" in two.reason
    assert two.reason.endswith("(at 2/255)") and two.rate.successes == 60
    assert "smallest L-inf budget with >= 90 %: linf 8/255" in two.number
    # claims without records say so as a value, not as words to parse
    for key in ("4", "6", "8"):
        assert _claim(results, key).verdict is Verdict.NOT_RUN


def test_too_few_targets_keeps_the_measured_verdict(record, frame_of):
    frame = frame_of([_transfer(record, i, success=True, eps_255=8.0) for i in range(12)])
    one = _claim(measure_claims(frame), "1")
    assert one.verdict is Verdict.TOO_FEW
    assert one.measured is Verdict.REPRODUCED_REDUCED
    assert one.reason.startswith("n = 12 < 100 per arm; as measured: reproduced at reduced scale")


def test_the_angle_claim_compares_with_the_claims_own_paper_value(frame):
    results = measure_claims(frame)
    three = _claim(results, "3")
    assert three.verdict is Verdict.REPRODUCED_REDUCED
    assert "the paper's 23 deg" in three.reason
    # the same records against another paper value give another verdict: the number is data
    doubled = dataclasses.replace(three.claim, paper_value=50.0)
    other = _claim(measure_claims(frame, [doubled]), "3")
    assert other.verdict is Verdict.NOT_REPRODUCED and "the paper's 50 deg" in other.reason


def test_transfer_details_come_from_the_records(frame):
    one = _claim(measure_claims(frame), "1")
    text = "\n".join(one.details)
    assert "96.6 % train, 78.7 % test accuracy" in text
    assert "30.0 at the start -> 12.0 crafted" in text


@pytest.mark.parametrize(
    ("values", "label"),
    [(3072, "l2 1.74 (8/255 per pixel)"), (784, "l2 1.74 (16/255 per pixel)"), (None, "l2 1.74")],
)
def test_an_l2_budget_is_spread_over_the_records_own_image_size(values, label):
    import pandas as pd

    frame = pd.DataFrame([{"constraint": "l2", "eps": 1.74, "image_values": values}])
    columns = budget_columns(frame)
    assert columns["budget"].iloc[0] == label
    assert columns["budget_norm"].iloc[0] == "l2"


def test_the_report_regenerates_byte_identical(frame, tmp_path):
    first, _ = write_replication(frame, tmp_path / "a" / "replication.md", "frogs-analyze x")
    second, _ = write_replication(frame, tmp_path / "b" / "replication.md", "frogs-analyze x")
    assert first.read_bytes() == second.read_bytes()
    text = first.read_text()
    for claim in CLAIMS:
        assert f"(img/{claim.figure}.png)" in text
