"""Success rates, Wilson intervals, grouping and derived columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import UnknownColumnError, ablation_arm, load_records, success_table, wilson_interval
from analysis.stats import PARAM_COLUMNS, format_values, parameter_columns, varying_parameters


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


def test_wilson_holds_the_rate_exactly() -> None:
    """0/n starts at exactly 0 and n/n ends at exactly 1 (rounding gave 0/11 a lower end of 3e-17,
    a negative error bar that matplotlib refuses)."""
    n = np.arange(1, 60)
    assert (wilson_interval(np.zeros_like(n), n)[0] == 0.0).all()
    assert (wilson_interval(n, n)[1] == 1.0).all()
    low, high = wilson_interval(np.arange(0, 12), np.full(12, 11))
    rates = np.arange(0, 12) / 11
    assert (low <= rates).all() and (rates <= high).all()


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
        make_trials(7, 10, attack__num_poisons=1, attack__opacity=0.2)
        + make_trials(3, 5, start=10, attack__num_poisons=50, attack__opacity=0.2)
        + make_trials(5, 5, start=20, attack__num_poisons=50, attack__opacity=0.3)
    )
    table = success_table(frame_of(records))
    columns = ["attack.num_poisons", "attack.opacity"]
    assert list(table.columns[:2]) == columns
    assert table[[*columns, "n", "successes"]].values.tolist() == [
        [1, 0.2, 10, 7],
        [50, 0.2, 5, 3],
        [50, 0.3, 5, 5],
    ]


def test_explicit_by_and_only_ok_trials_count(make_trials, make_failed) -> None:
    records = make_trials(2, 4, attack__num_poisons=1)
    records += make_trials(1, 1, start=4, attack__num_poisons=5)
    records += [make_failed(r) for r in make_trials(0, 3, start=10, attack__num_poisons=1)]
    table = success_table(frame_of(records), by="attack.num_poisons")
    assert table[["attack.num_poisons", "n", "successes"]].values.tolist() == [
        [1, 4, 2],
        [5, 1, 1],
    ]


def test_group_with_null_key_is_kept(make_trials) -> None:
    records = make_trials(1, 2, eps=None, eps_255=None, constraint="l2")
    records += make_trials(2, 2, start=2, eps=2 / 255, eps_255=2.0)
    table = success_table(frame_of(records))
    assert list(table.columns[:2]) == ["constraint", "eps_255"]
    assert sorted(table["n"]) == [2, 2]
    assert table["eps_255"].isna().sum() == 1


def perceptibility_frame(record, make_failed) -> pd.DataFrame:
    """Two groups of hand-picked worst-poison values, plus a failed trial that must not count."""
    rows = [  # (attack.num_poisons, success, psnr, linf255, ssim, control_success)
        (1, True, 30.0, 4.0, 0.90, True),
        (1, False, 34.0, 8.0, 0.80, False),
        (1, True, None, 6.0, 0.95, None),  # poisons equal to their bases: infinite PSNR
        (1, False, 20.0, 2.0, 0.70, True),
        (5, True, None, 1.0, 0.99, False),
    ]
    fields = (
        "attack__num_poisons",
        "success",
        "poison_psnr_base_worst",
        "poison_linf255_base_worst",
        "poison_ssim_base_worst",
        "control_success",
    )
    records = [record(i, **dict(zip(fields, row, strict=True))) for i, row in enumerate(rows)]
    records.append(
        make_failed(record(9, attack__num_poisons=1))
        | {"poison_linf255_base_worst": 99.0, "poison_psnr_base_worst": 1.0}
    )
    return frame_of(records)


def test_success_table_reports_perceptibility(record, make_failed) -> None:
    table = success_table(perceptibility_frame(record, make_failed))
    assert list(table.columns) == ["attack.num_poisons", *RATES, *PERCEPTIBILITY]
    first, second = table.to_dict("records")
    # 1 poison: PSNR median of 30, 34, 20 (the null skipped); max L-inf of 4, 8, 6, 2;
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


def test_old_records_without_perceptibility(old_record, write_job) -> None:
    records = [old_record(i, success=i < 2, num_poisons=1 + i % 2) for i in range(4)]
    table = success_table(load_records(write_job(records)).frame)
    assert list(table.columns) == ["attack.num_poisons", *RATES]
    assert table[["attack.num_poisons", "n", "successes"]].values.tolist() == [
        [1, 2, 1],
        [2, 2, 1],
    ]


def test_old_and_new_records_together(old_record, make_trials, write_job) -> None:
    records = [old_record(i, success=True, num_poisons=1) for i in range(2)]
    records += make_trials(1, 2, start=2, attack__num_poisons=5)
    table = success_table(load_records(write_job(records)).frame, by="attack.num_poisons")
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
        success_table(frame_of(make_trials(1, 2)), by=["attack.opacity", "nope"])


def test_varying_parameters_ignores_non_parameters(make_trials) -> None:
    frame = frame_of(make_trials(1, 3))
    assert varying_parameters(frame) == []  # trial_id, target_index vary but are not parameters


def test_parameter_columns_follow_the_new_record(make_trials) -> None:
    assert {"attack", "defense", "eps_255", "pretrain_epochs"} <= set(PARAM_COLUMNS)
    assert not {"stop_distance", "eps", "seed", "victim"} & set(PARAM_COLUMNS)
    records = make_trials(1, 2, attack__recipe="algorithm1") + make_trials(
        1, 2, start=2, attack__recipe="authors", attack__step="gradient", stop_distance=3.2
    )
    assert varying_parameters(frame_of(records)) == ["attack.recipe", "attack.step"]


def test_parameter_columns_are_derived_from_the_settings_columns(record) -> None:
    frame = frame_of([record(0, defense="deep_knn"), record(1, attack="convex_polytope")])
    columns = parameter_columns(frame.columns)
    settings = [c for c in frame.columns if c.split(".")[0] in ("attack", "victim", "defense")]
    settings = [c for c in settings if "." in c and c not in ("attack.constraint", "attack.eps")]
    assert set(columns) == set(settings) | (set(PARAM_COLUMNS) & set(frame.columns))
    assert columns[:8] == [
        "scenario", "dataset", "model", "attack", "defense",
        "target_class", "base_class", "target_selection",
    ]  # fmt: skip
    first = [columns.index(c) for c in ("attack.recipe", "victim.epochs", "defense.k")]
    assert first == sorted(first) and columns[-5:] == [
        "constraint", "eps_255", "pretrain_epochs", "pretrain_schedule", "pretrain_classes",
    ]  # fmt: skip
    assert {"attack.ensemble", "attack.dropout", "victim.batch_size"} <= set(columns)
    # the two attacks' (and defenses') own fields differ, but none is swept for one attack
    assert varying_parameters(frame) == ["attack", "defense"]


def test_a_setting_varies_when_it_varies_for_one_attack(record) -> None:
    records = [
        record(0, attack="convex_polytope", attack__num_poisons=1),
        record(1, attack="convex_polytope", attack__num_poisons=5),
        record(2, attack__num_poisons=5, scenario="transfer", victim="transfer", victim__epochs=1),
        record(3, attack__num_poisons=5),
    ]
    assert varying_parameters(frame_of(records)) == [
        "scenario", "attack", "attack.num_poisons",
    ]  # fmt: skip  # victim.epochs follows the victim


def test_ablation_arms(record) -> None:
    frame = pd.DataFrame(
        [
            record(0),
            record(1, attack__multi_base=False),
            record(2, attack__optimize=False),
            record(3, attack__opacity=0.0),
            record(4, attack__multi_base=False, attack__opacity=0.0),
        ]
    )
    assert ablation_arm(frame).tolist() == [
        "full",
        "single base",
        "no optimization",
        "no watermark",
        "single base + no watermark",
    ]
