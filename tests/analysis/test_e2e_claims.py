"""The end-to-end claims (5-8) of the replication report on synthetic records: the overlap
figure, the 8-bit effect, the scale as run, reuse, paired reductions and the poison-count curve."""

from __future__ import annotations

import re
import statistics

import pandas as pd
import pytest

from analysis.claims import E2E_REDUCTIONS, Verdict, comparison_runs
from analysis.replication import (
    FIGURE_OVERLAP,
    FIGURE_POISONS,
    e2e_details,
    measure_claims,
    wall_seconds,
    write_replication,
)
from tests.analysis.conftest import e2e_record


@pytest.fixture
def frame(frame_of):
    records = []
    index = 0
    for poisons in (1, 10, 25, 50):
        for opacity in (0.2, 0.3):
            for i in range(20):
                # success rises with the number of poisons, 30 % above 20 % (by construction)
                kills = poisons // 5 - (opacity == 0.2)
                records.append(e2e_record(index, success=i < kills, poisons=poisons,
                                    opacity=opacity))  # fmt: skip
                index += 1
    # paired comparison runs: epochs 10 on the first 3 targets of the 50 / 0.3 job
    for i in range(3):
        records.append(e2e_record(10_000 + i, success=True, epochs=10))
    return frame_of(records)


def _claim(results, key):
    return next(r for r in results if r.claim.key == key)


def test_claim_5_counts_its_own_records_and_reports_overlap(frame):
    five = _claim(measure_claims(frame), "5")
    own = frame[
        (frame["attack.num_poisons"] == 50)
        & (frame["attack.opacity"] == 0.3)
        & (frame["victim.epochs"] == 2)
    ]
    assert five.rate.n == len(own) == 20
    assert five.rate.successes == int(own["success"].sum()) == 10
    text = "\n".join(five.details)
    assert (
        "as run (from the records): recipe authors_e2e, 1500 crafting iterations, 2 retraining"
        in (text)
    )
    assert "100.0 % train, 69.2 % test accuracy" in text
    median = statistics.median(own["feat_dist_after"])
    assert f"{median:.1f} crafted" in text
    assert "the target's nearest clean training image at 24.0" in text
    share = own["poisons_overlap_fraction"].mean()
    assert f"{100 * share:.0f} % of poisons overlap" in text
    unclipped = statistics.median(own["feat_dist_after_unclipped"])
    assert f"from {unclipped:.2f} to {median:.2f} (20 crafted trials)" in text
    assert "reused from a set crafted earlier (attack.pool: 50): 0/20 trials" in text
    # the epochs-10 runs are paired with their targets, not counted
    effect = "\n".join(five.reductions)
    assert "retraining epochs: 2 (as run) vs 10 on the same 3 targets" in effect


def test_claim_7_curve_has_both_opacities(frame, tmp_path):
    out, results = write_replication(frame, tmp_path / "replication.md", "frogs-analyze test")
    seven = _claim(results, "7")
    assert "Spearman rho" in seven.number
    assert seven.verdict is Verdict.REPRODUCED_REDUCED and "success rises" in seven.reason
    # 30 %: 0 + 2 + 5 + 10 of 80; 20 %: 0 + 1 + 4 + 9 of 80
    assert (
        "30 % opacity above 20 % on the same targets at the counts both ran (1, 10, 25, 50; "
        "80 target-count pairs): 21 % (17/80"
    ) in seven.reason
    assert "vs 18 % (14/80" in seven.reason and "3 killed at 30 % alone, 0 at 20 % alone" in (
        seven.reason
    )
    arms = set(seven.arms["arm"])
    assert {"1 poisons, 20 %", "50 poisons, 30 %", "25 poisons, 20 %"} <= arms
    # the epochs-10 comparison runs of claim 5 are not a poison-count arm's trials
    assert set(seven.arms["n"]) == {20}
    assert set(seven.records["victim.epochs"]) == {2}
    text = out.read_text()
    for name in (FIGURE_OVERLAP, FIGURE_POISONS):
        assert (tmp_path / "img" / f"{name}.png").stat().st_size > 5_000, name
        assert f"(img/{name}.png)" in text
    assert re.search(r"\| 5 \| End-to-end: 50 poisons.*\| 50 % \(10/20; 95 % CI", text)


def test_a_reduction_is_paired_within_each_arm(frame, frame_of):
    """The 12,000-iteration run on the 10-poison, 30 % arm's first 4 targets is paired with that
    arm's trials alone (not with every arm attacking those targets), and claim 5 (50 poisons)
    has no iteration pairs."""
    extra = [e2e_record(10_100 + i, success=i == 0, poisons=10, iters=12000) for i in range(4)]
    records = frame_of(extra)
    results = measure_claims(pd.concat([frame, records], ignore_index=True))
    seven = _claim(results, "7")
    effects = "\n".join(seven.reductions)
    # the arm's first 4 targets: successes i < 10 // 5 - 0 = 2 as run, 1 with 12,000 iterations
    assert "crafting iterations: 1500 (as run) vs 12000 on the same 4 targets: 2 vs 1" in effects
    assert "retraining epochs: 2 (as run) vs 10 on the same 3 targets" in effects
    assert set(seven.arms["n"]) == {20}  # the comparison runs are no arm's trials
    five = _claim(results, "5")
    assert not any(e.startswith("crafting iterations") for e in five.reductions)


def test_each_arm_shows_its_own_overlap(frame, tmp_path):
    """The arm tables of the end-to-end claims carry each arm's median poison-target distance
    and share of overlapping poisons (claim 8's arms differ in how close their poisons get)."""
    out, results = write_replication(frame, tmp_path / "replication.md", "frogs-analyze test")
    arms = _claim(results, "7").arms.set_index("arm")
    for (poisons, opacity), part in frame[frame["victim.epochs"] == 2].groupby(
        ["attack.num_poisons", "attack.opacity"]
    ):
        row = arms.loc[f"{poisons} poisons, {round(100 * opacity)} %"]
        assert row["feat_dist_median"] == pytest.approx(part["feat_dist_after"].median())
        share = 100 * part["poisons_overlap_fraction"].mean()
        assert row["overlap_pct"] == pytest.approx(share)
    assert "| median poison-target distance | poisons overlapping % |" in out.read_text()


def test_reused_poisons_add_no_crafting_time(frame):
    reused = frame[frame["poisons_reused"].astype(bool)]
    fresh = frame[~frame["poisons_reused"].astype(bool)]
    assert wall_seconds(reused) == pytest.approx(11.0 * len(reused))
    assert wall_seconds(fresh) == pytest.approx(111.0 * len(fresh))


def test_gpu_estimate_scales_the_records_stage_times_to_the_paper(frame):
    # fresh trials: 100 s crafting at 1,500 iterations, 10 s retraining at 2 epochs on 20,000
    # images, 1 s evaluation -> 12,000 iterations, 10 epochs, 50,000 images
    fresh = 100 * 12000 / 1500 + 10 * (10 / 2) * (50_000 / 20_000) + 1
    paired = 100 * 12000 / 1500 + 10 * (10 / 10) * (50_000 / 20_000) + 1  # the epochs-10 runs
    results = measure_claims(frame)
    for key in ("5", "6", "7", "8"):
        assert _claim(results, key).paper_trial_s == pytest.approx(fresh)
    assert paired < fresh  # 20 fresh trials at 2 epochs outnumber the 3 paired ones
    assert _claim(results, "1").paper_trial_s == _claim(results, "1").claim.assumed_paper_trial_s


def test_comparison_runs_undo_some_reductions_but_not_all():
    frame = pd.DataFrame(
        {
            "attack.iters": [1500, 1500, 12000, 12000],
            "victim.epochs": [2, 10, 2, 10],
        }
    )
    # as run (reduced), two paired comparisons, and a paper-scale run (which counts)
    assert comparison_runs(frame, E2E_REDUCTIONS).tolist() == [False, True, True, False]
    assert not comparison_runs(frame[["attack.iters"]], E2E_REDUCTIONS).any()


def _poison_count_records(cells: dict[tuple[int, float], int], n: int = 10) -> list[dict]:
    """``n`` records per (poison count, opacity) cell, the first ``kills`` of them successes."""
    records, index = [], 0
    for (poisons, opacity), kills in cells.items():
        for i in range(n):
            records.append(e2e_record(index, success=i < kills, poisons=poisons, opacity=opacity))
            index += 1
    return records


def test_claim_7_waits_for_every_count_at_the_lower_opacity(frame_of):
    """Fig. 5b also says 30 % beats 20 %: with the 20 % arm at one count, that is not judged yet."""
    cells = {(1, 0.3): 0, (10, 0.3): 2, (25, 0.3): 4, (1, 0.2): 0}
    seven = _claim(measure_claims(frame_of(_poison_count_records(cells))), "7")
    assert seven.verdict is Verdict.TOO_FEW
    assert seven.reason.startswith("the 20 % opacity arm lacks 10, 25 poisons; as measured: ")
    assert seven.measured is Verdict.REPRODUCED_REDUCED  # the rise alone, so far


def test_claim_7_is_not_reproduced_when_the_higher_opacity_does_not_win(frame_of):
    cells = {(1, 0.3): 0, (10, 0.3): 2, (1, 0.2): 0, (10, 0.2): 3}
    seven = _claim(measure_claims(frame_of(_poison_count_records(cells))), "7")
    assert seven.verdict is Verdict.NOT_REPRODUCED
    assert "success rises" in seven.reason
    assert "30 % opacity not above 20 % on the same targets at the counts both ran (1, 10;" in (
        seven.reason
    )


def test_claim_7_compares_the_opacities_on_the_targets_both_attacked(frame_of):
    """30 % on 20 targets (killing the last 10 at 10 poisons), 20 % on the first 10 (killing 2):
    pooled, 30 % would win 10/40 to 2/20; on the targets both attacked it kills none."""
    records = [e2e_record(i, success=i >= 10, poisons=10, opacity=0.3) for i in range(20)] + [
        e2e_record(i, success=i < 22, poisons=10, opacity=0.2) for i in range(20, 30)
    ]
    records += [e2e_record(i, success=False, poisons=1, opacity=0.3) for i in range(40, 60)]
    records += [e2e_record(i, success=False, poisons=1, opacity=0.2) for i in range(60, 70)]
    seven = _claim(measure_claims(frame_of(records)), "7")
    assert seven.verdict is Verdict.NOT_REPRODUCED
    assert (
        "30 % opacity not above 20 % on the same targets at the counts both ran (1, 10; "
        "20 target-count pairs): 0 % (0/20; 95 % CI 0-16 %) vs 10 % (2/20"
    ) in seven.reason


def test_claim_7_says_every_reason_it_waits_for_once(frame_of):
    cells = {(1, 0.3): 0, (10, 0.3): 2, (25, 0.3): 4, (1, 0.2): 0}
    records = _poison_count_records(cells)[:-5]  # the 20 % arm's one count: 5 targets only
    seven = _claim(measure_claims(frame_of(records)), "7")
    assert seven.verdict is Verdict.TOO_FEW
    assert seven.reason.startswith(
        "n = 5 < 10 per arm; the 20 % opacity arm lacks 10, 25 poisons; as measured: "
    )
    assert seven.reason.count("as measured") == 1


def test_the_8_bit_effect_pairs_the_crafted_trials(frame_of):
    """An arm without crafting (no unclipped result) stays out of both sides of the 8-bit
    comparison, so the comparison is paired: its far poisons do not move the clipped median."""
    crafted = [e2e_record(i, success=False) for i in range(4)]
    watermarked = [
        {
            **e2e_record(100 + i, success=False),
            "attack.optimize": False,
            "feat_dist_after": 90.0 + i,
            "feat_dist_after_unclipped": None,
        }
        for i in range(4)
    ]
    text = "\n".join(e2e_details(frame_of(crafted + watermarked)))
    expected = (
        f"from {statistics.median(r['feat_dist_after_unclipped'] for r in crafted):.2f} to "
        f"{statistics.median(r['feat_dist_after'] for r in crafted):.2f} (4 crafted trials)"
    )
    assert expected in text, text
