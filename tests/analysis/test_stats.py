"""Success rates, Wilson intervals, grouping and derived columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import UnknownColumnError, ablation_arm, success_table, wilson_interval
from analysis.stats import varying_parameters


def test_wilson_matches_hand_computed_case() -> None:
    low, high = wilson_interval(7, 10)
    assert (round(low, 4), round(high, 4)) == (0.3968, 0.8922)


@pytest.mark.parametrize(
    ("k", "n", "expected"),
    [(0, 10, (0.0, 0.2775)), (10, 10, (0.7225, 1.0)), (50, 100, (0.4038, 0.5962))],
)
def test_wilson_edges(k: int, n: int, expected: tuple[float, float]) -> None:
    low, high = wilson_interval(k, n)
    assert (round(low, 4), round(high, 4)) == expected


def test_wilson_vectorised_and_empty_group() -> None:
    low, high = wilson_interval(np.array([7, 0]), np.array([10, 0]))
    assert low[0] == pytest.approx(0.39678, abs=1e-5)
    assert np.isnan(low[1]) and np.isnan(high[1])


def frame_of(records: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records)
    frame["success"] = frame["success"].astype("boolean")
    return frame


def test_rate_and_interval_for_known_outcomes(make_trials) -> None:
    table = success_table(frame_of(make_trials(7, 10)))
    assert list(table.columns) == ["n", "successes", "rate", "ci_low", "ci_high"]
    row = table.iloc[0]
    assert (row.n, row.successes, row.rate) == (10, 7, pytest.approx(0.7))
    assert (round(row.ci_low, 4), round(row.ci_high, 4)) == (0.3968, 0.8922)


def test_default_grouping_uses_varying_parameters(make_trials) -> None:
    records = (
        make_trials(7, 10, num_poisons=1, opacity=0.2)
        + make_trials(3, 5, start=10, num_poisons=50, opacity=0.2)
        + make_trials(5, 5, start=20, num_poisons=50, opacity=0.3)
    )
    table = success_table(frame_of(records))
    assert list(table.columns[:2]) == ["num_poisons", "opacity"]
    assert table[["num_poisons", "opacity", "n", "successes"]].values.tolist() == [
        [1, 0.2, 10, 7],
        [50, 0.2, 5, 3],
        [50, 0.3, 5, 5],
    ]


def test_explicit_by_and_only_ok_trials_count(make_trials, make_failed) -> None:
    records = make_trials(2, 4, num_poisons=1) + make_trials(1, 1, start=4, num_poisons=5)
    records += [make_failed(r) for r in make_trials(0, 3, start=10, num_poisons=1)]
    table = success_table(frame_of(records), by="num_poisons")
    assert table[["num_poisons", "n", "successes"]].values.tolist() == [[1, 4, 2], [5, 1, 1]]


def test_group_with_null_key_is_kept(make_trials) -> None:
    records = make_trials(1, 2, eps=None) + make_trials(2, 2, start=2, eps=0.0078)
    table = success_table(frame_of(records), by=["eps"])
    assert sorted(table["n"]) == [2, 2]
    assert table["eps"].isna().sum() == 1


def test_unknown_column_lists_available(make_trials) -> None:
    with pytest.raises(UnknownColumnError, match=r"unknown column\(s\) nope; available: .*opacity"):
        success_table(frame_of(make_trials(1, 2)), by=["opacity", "nope"])


def test_varying_parameters_ignores_non_parameters(make_trials) -> None:
    frame = frame_of(make_trials(1, 3))
    assert varying_parameters(frame) == []  # trial_id, target_index vary but are not parameters


def test_ablation_arms(record) -> None:
    frame = pd.DataFrame(
        [
            record(0),
            record(1, multi_base=False),
            record(2, optimize=False),
            record(3, opacity=0.0),
            record(4, multi_base=False, opacity=0.0),
        ]
    )
    assert ablation_arm(frame).tolist() == [
        "full",
        "single base",
        "no optimization",
        "no watermark",
        "single base + no watermark",
    ]
