"""Success rates, Wilson intervals, grouping and derived columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import UnknownColumnError, ablation_arm, success_table, wilson_interval
from analysis.stats import PARAM_COLUMNS, format_values, varying_parameters


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


RATES = ["n", "successes", "rate", "ci_low", "ci_high"]
PERCEPTIBILITY = ["psnr_median", "linf255_max", "ssim_median", "control_successes"]


def test_rate_and_interval_for_known_outcomes(make_trials) -> None:
    table = success_table(frame_of(make_trials(7, 10)))
    assert list(table.columns) == RATES + PERCEPTIBILITY
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
    records = make_trials(1, 2, eps=None, eps_255=None, constraint="l2")
    records += make_trials(2, 2, start=2, eps=2 / 255, eps_255=2.0)
    table = success_table(frame_of(records))
    assert list(table.columns[:2]) == ["constraint", "eps_255"]
    assert sorted(table["n"]) == [2, 2]
    assert table["eps_255"].isna().sum() == 1


def perceptibility_frame(record, make_failed) -> pd.DataFrame:
    """Two groups of hand-picked worst-poison values, plus a failed trial that must not count."""
    rows = [  # (num_poisons, success, psnr, linf255, ssim, control_success)
        (1, True, 30.0, 4.0, 0.90, True),
        (1, False, 34.0, 8.0, 0.80, False),
        (1, True, None, 6.0, 0.95, None),  # poisons equal to their bases: infinite PSNR
        (1, False, 20.0, 2.0, 0.70, True),
        (5, True, None, 1.0, 0.99, False),
    ]
    fields = (
        "num_poisons",
        "success",
        "poison_psnr_base_worst",
        "poison_linf255_base_worst",
        "poison_ssim_base_worst",
        "control_success",
    )
    records = [record(i, **dict(zip(fields, row, strict=True))) for i, row in enumerate(rows)]
    records.append(
        make_failed(record(9, num_poisons=1))
        | {"poison_linf255_base_worst": 99.0, "poison_psnr_base_worst": 1.0}
    )
    return frame_of(records)


def test_success_table_reports_perceptibility(record, make_failed) -> None:
    table = success_table(perceptibility_frame(record, make_failed))
    assert list(table.columns) == ["num_poisons", *RATES, *PERCEPTIBILITY]
    first, second = table.to_dict("records")
    # num_poisons 1: PSNR median of 30, 34, 20 (the null skipped); max L-inf of 4, 8, 6, 2;
    # SSIM median of 0.7, 0.8, 0.9, 0.95 = (0.8 + 0.9) / 2; two controls already succeed
    assert (first["n"], first["successes"]) == (4, 2)
    assert first["psnr_median"] == 30.0
    assert first["linf255_max"] == 8.0
    assert first["ssim_median"] == pytest.approx(0.85)
    assert first["control_successes"] == 2
    assert np.isnan(second["psnr_median"])  # its only PSNR is infinite (null)
    assert (second["linf255_max"], second["ssim_median"], second["control_successes"]) == (
        1.0,
        0.99,
        0,
    )


def test_perceptibility_without_grouping(record, make_failed) -> None:
    table = success_table(perceptibility_frame(record, make_failed), by=[])
    assert list(table.columns) == RATES + PERCEPTIBILITY
    row = table.iloc[0]
    assert (row.n, row.successes, row.psnr_median, row.linf255_max) == (5, 3, 30.0, 8.0)
    assert (row.ssim_median, row.control_successes) == (0.9, 2)


def test_old_records_without_perceptibility(old_record) -> None:
    records = [old_record(i, success=i < 2, num_poisons=1 + i % 2) for i in range(4)]
    table = success_table(frame_of(records))
    assert list(table.columns) == ["num_poisons", *RATES]
    assert table[["num_poisons", "n", "successes"]].values.tolist() == [[1, 2, 1], [2, 2, 1]]


def test_old_and_new_records_together(old_record, make_trials) -> None:
    records = [old_record(i, success=True, num_poisons=1) for i in range(2)]
    records += make_trials(1, 2, start=2, num_poisons=5)
    table = success_table(frame_of(records), by="num_poisons")
    assert table["psnr_median"].isna().tolist() == [True, False]
    assert table["control_successes"].tolist() == [0, 0]


def test_only_some_perceptibility_fields(make_trials) -> None:
    frame = frame_of(make_trials(1, 2)).drop(columns=["poison_ssim_base_worst", "control_success"])
    assert list(success_table(frame).columns) == [*RATES, "psnr_median", "linf255_max"]


def test_format_values() -> None:
    table = pd.DataFrame({"rate": [0.5], "psnr_median": [float("nan")], "ssim_median": [0.98765]})
    shown = format_values(table, na="-")
    assert shown.values.tolist() == [["0.500", "-", "0.9877"]]


def test_unknown_column_lists_available(make_trials) -> None:
    with pytest.raises(UnknownColumnError, match=r"unknown column\(s\) nope; available: .*opacity"):
        success_table(frame_of(make_trials(1, 2)), by=["opacity", "nope"])


def test_varying_parameters_ignores_non_parameters(make_trials) -> None:
    frame = frame_of(make_trials(1, 3))
    assert varying_parameters(frame) == []  # trial_id, target_index vary but are not parameters


def test_parameter_columns_follow_the_new_record(make_trials) -> None:
    assert {"recipe", "step", "eps_255", "quantize", "pretrain_epochs"} <= set(PARAM_COLUMNS)
    assert not {"stop_distance", "eps"} & set(PARAM_COLUMNS)  # a resolved number; = eps_255
    records = make_trials(1, 2, recipe="algorithm1") + make_trials(
        1, 2, start=2, recipe="authors", step="gradient", stop_distance=3.2
    )
    assert varying_parameters(frame_of(records)) == ["recipe", "step"]


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
