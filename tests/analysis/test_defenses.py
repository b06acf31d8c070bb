"""Schema 3: older records upgraded on load, and the attacks-against-defenses table and figure."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis import compares_defenses, defense_table, load_records, make_figures
from analysis.claims import paper_attack
from analysis.cli import main
from analysis.load import LEGACY_COLUMNS
from analysis.stats import wilson_interval

# Upgrading schema <= 2 records ----------------------------------------------------------------


def test_schema2_records_get_the_schema3_columns(parser, write_job, v2_record, make_failed):
    records = [
        v2_record(0, num_poisons=10, opacity=0.2, iters=250, retrain_epochs=3, retrain_lr=0.01),
        v2_record(1, stop_distance_setting="auto", stop_distance=3.5, constraint="l2", eps=0.5),
        make_failed(v2_record(2)),
    ]
    frame = load_records(write_job(records)).frame.set_index("trial_id")
    moved = [old for old in LEGACY_COLUMNS if old not in ("constraint", "eps")]
    assert not set(moved) & set(frame.columns)  # one set of names: the schema-3 ones
    first = frame.loc["t000000"]
    assert (first["attack.num_poisons"], first["attack.opacity"], first["attack.iters"]) == (
        10,
        0.2,
        250,
    )
    assert (first["victim.epochs"], first["victim.lr"]) == (3, 0.01)
    assert (first["attack.recipe"], first["attack.step"], first["attack.beta0"]) == (
        "algorithm1",
        "sign",
        0.25,
    )
    assert bool(first["attack.quantize"]) and bool(first["attack.multi_base"])
    assert bool(first["attack.optimize"]) and not bool(first["attack.lr_decay"])
    assert first["attack.lr"] == pytest.approx(0.5 / 255)
    second = frame.loc["t000001"]
    assert second["attack.stop_distance"] == "auto" and second["stop_distance"] == 3.5
    # the resolved budget stays top-level and is also the attack's
    assert (second["constraint"], second["attack.constraint"]) == ("l2", "l2")
    assert second["eps"] == second["attack.eps"] == 0.5
    assert first["attack.eps"] == pytest.approx(8 / 255) and first["eps_255"] == 8.0
    # no defense: nothing removed on the ok trials; a failed trial has no outcomes
    assert frame["defense"].tolist() == ["none"] * 3
    assert frame.loc[["t000000", "t000001"], "poisons_removed"].tolist() == [0, 0]
    assert frame.loc[["t000000", "t000001"], "clean_removed"].tolist() == [0, 0]
    assert frame.loc[["t000000", "t000001"], "poison_recall"].tolist() == [0.0, 0.0]
    assert frame.loc["t000002", ["poisons_removed", "poison_recall"]].isna().all()


def test_schema1_records_are_upgraded_too(parser, write_job, old_record):
    frame = load_records(write_job([old_record(0, constraint="linf", eps=2 / 255)])).frame
    row = frame.iloc[0]
    assert (row["attack.num_poisons"], row["victim.epochs"], row["eps_255"]) == (50, 10, 2.0)
    assert row["attack.eps"] == pytest.approx(2 / 255) and row["defense"] == "none"
    assert "num_poisons" not in frame and "retrain_epochs" not in frame


def test_mixed_schemas_load_into_one_frame(parser, write_job, write_records, v2_record, record):
    old = [v2_record(i, num_poisons=1 + i, retrain_epochs=3) for i in range(2)]
    new = [
        record(2, attack__num_poisons=7, victim__epochs=5),
        record(3, attack="convex_polytope", defense="deep_knn", poisons_removed=4),
        record(4, defense="spectral_signatures"),
    ]
    new[1]["poison_recall"] = 0.8
    new[2]["poisons_removed"] = new[2]["poison_recall"] = None  # a defense that recorded none
    job = write_job([old[0], new[0]], job="mixed")  # both schemas in one file
    write_records(job.parent / "other" / "results.jsonl", [old[1], *new[1:]])
    frame = load_records([job.parent]).frame.set_index("trial_id").sort_index()
    assert frame["schema"].tolist() == [2, 2, 3, 3, 3]
    assert frame["attack.num_poisons"].tolist() == [1, 2, 7, 5, 50]
    assert frame["victim.epochs"].tolist() == [3, 3, 5, 10, 10]
    assert frame["defense"].tolist() == [
        "none",
        "none",
        "none",
        "deep_knn",
        "spectral_signatures",
    ]
    assert frame["poisons_removed"].tolist()[:4] == [0, 0, 0, 4]
    assert frame["poison_recall"].tolist()[:4] == [0.0, 0.0, 0.0, 0.8]
    # only an undefended trial is known to have removed nothing
    assert np.isnan(frame["poison_recall"].iloc[4])
    assert frame.loc["t000003", "attack.ensemble"] == ["alexnet_cifar", "resnet18"]
    assert frame.loc["t000003", "defense.k"] == 50
    assert not {"num_poisons", "retrain_epochs", "iters"} & set(frame.columns)


def test_paper_claims_count_only_undefended_feature_collision(record) -> None:
    frame = pd.DataFrame(
        [
            record(0),
            record(1, defense="deep_knn"),
            record(2, attack="convex_polytope"),
        ]
    )
    assert paper_attack(frame).tolist() == [True, False, False]
    assert paper_attack(frame.drop(columns="defense")).tolist() == [True, True, False]


# The defenses table ---------------------------------------------------------------------------

ATTACKS = ("feature_collision", "convex_polytope", "bullseye_polytope")
DEFENSES = ("none", "deep_knn", "spectral_signatures", "activation_clustering")


def cell(
    make_failed, record, attack: str, defense: str, start: int, outcomes: list[tuple]
) -> list[dict]:
    """One (attack, defense) cell: one record per ``(success, recall, clean removed, psnr,
    linf255, control)`` and a failed trial that must not count."""
    records = [
        record(
            start + i,
            attack=attack,
            defense=defense,
            success=success,
            poison_recall=recall,
            poisons_removed=None if recall is None else round(5 * recall),
            clean_removed=clean,
            poison_psnr_base_worst=psnr,
            poison_linf255_base_worst=linf,
            control_success=control,
        )
        for i, (success, recall, clean, psnr, linf, control) in enumerate(outcomes)
    ]
    failed = make_failed(record(start + 90, attack=attack, defense=defense))
    return [*records, failed | {"poison_recall": 1.0, "clean_removed": 999}]


@pytest.fixture
def study(record, make_failed) -> list[dict]:
    """3 attacks x 4 defenses; four cells hand-picked, the others two plain trials each."""
    picked = {
        ("feature_collision", "none"): [(i < 7, 0.0, 0, 30.0, 8.0, i == 0) for i in range(10)],
        ("feature_collision", "deep_knn"): [
            (True, 0.2, 10, 32.0, 6.0, False),
            (False, 1.0, 30, 28.0, 9.0, False),
            (False, 0.6, 20, 36.0, 7.0, True),
            (False, None, 50, None, 2.0, False),  # no recall recorded; infinite PSNR
        ],
        ("convex_polytope", "spectral_signatures"): [
            (False, 0.4, 100, 31.0, 8.0, False),
            (False, 0.8, 60, 33.0, 8.0, False),
        ],
        ("bullseye_polytope", "none"): [(True, 0.0, 0, 35.0, 8.0, False)] * 3,
    }
    records: list[dict] = []
    for a, attack in enumerate(ATTACKS):
        for d, defense in enumerate(DEFENSES):
            outcomes = picked.get((attack, defense), [(False, 0.5, 5, 30.0, 8.0, False)] * 2)
            records += cell(make_failed, record, attack, defense, 100 * (4 * a + d), outcomes)
    return records


def test_defense_table_matches_a_hand_count(study, write_job) -> None:
    frame = load_records(write_job(study)).frame
    assert compares_defenses(frame)
    table = defense_table(frame)
    # one row per (attack, defense): attacks by name, each one's undefended row first
    assert list(zip(table["attack"], table["defense"], strict=True)) == [
        (attack, defense)
        for attack in sorted(ATTACKS)
        for defense in ("none", "activation_clustering", "deep_knn", "spectral_signatures")
    ]
    assert list(table.columns) == [
        "attack", "defense", "n", "successes", "rate", "ci_low", "ci_high",
        "recall_mean", "recall_n", "clean_removed_mean",
        "psnr_median", "linf255_max", "ssim_median", "control_successes",
    ]  # fmt: skip
    rows = table.set_index(["attack", "defense"])
    fc_none = rows.loc[("feature_collision", "none")]
    assert (fc_none["n"], fc_none["successes"], fc_none["rate"]) == (10, 7, 0.7)
    assert (round(fc_none["ci_low"], 4), round(fc_none["ci_high"], 4)) == (0.3968, 0.8922)
    assert (fc_none["recall_mean"], fc_none["recall_n"], fc_none["clean_removed_mean"]) == (
        0.0,
        10,
        0.0,
    )
    assert (fc_none["psnr_median"], fc_none["linf255_max"], fc_none["control_successes"]) == (
        30.0,
        8.0,
        1,
    )
    knn = rows.loc[("feature_collision", "deep_knn")]
    # 4 ok trials (the failed one with recall 1.0 and 999 removed does not count)
    assert (knn["n"], knn["successes"], knn["control_successes"]) == (4, 1, 1)
    assert knn["recall_mean"] == pytest.approx((0.2 + 1.0 + 0.6) / 3) and knn["recall_n"] == 3
    assert knn["clean_removed_mean"] == (10 + 30 + 20 + 50) / 4
    assert (knn["psnr_median"], knn["linf255_max"]) == (32.0, 9.0)  # median of 32, 28, 36
    spectral = rows.loc[("convex_polytope", "spectral_signatures")]
    assert (spectral["n"], spectral["successes"], spectral["recall_n"]) == (2, 0, 2)
    assert spectral["recall_mean"] == pytest.approx(0.6)
    assert (spectral["clean_removed_mean"], spectral["psnr_median"]) == (80.0, 32.0)
    assert (round(spectral["ci_low"], 4), round(spectral["ci_high"], 4)) == (0.0, 0.6576)
    bullseye = rows.loc[("bullseye_polytope", "none")]
    assert (bullseye["n"], bullseye["successes"], bullseye["rate"]) == (3, 3, 1.0)
    # every row: the Wilson 95 % interval of its own count, around its rate
    low, high = wilson_interval(table["successes"].to_numpy(), table["n"].to_numpy())
    np.testing.assert_allclose(table["ci_low"], low)
    np.testing.assert_allclose(table["ci_high"], high)
    assert ((table["ci_low"] <= table["rate"]) & (table["rate"] <= table["ci_high"])).all()
    assert table["n"].sum() == 10 + 4 + 2 + 3 + 8 * 2


def test_parameters_swept_within_a_pair_split_its_row(record) -> None:
    records = [
        record(10 * n + i, attack=attack, defense=defense, success=i == 0, attack__num_poisons=n)
        for attack in ("feature_collision", "convex_polytope")
        for defense in ("none", "deep_knn")
        for n in (1, 10)
        for i in range(2)
    ]
    frame = pd.DataFrame(records).assign(success=lambda f: f["success"].astype("boolean"))
    table = defense_table(frame)
    # attack.num_poisons varies within each pair; attack.opacity (feature collision only) and
    # defense.k (deep_knn only) follow the attack / defense and do not split
    assert list(table.columns[:3]) == ["attack", "defense", "attack.num_poisons"]
    assert len(table) == 8 and set(table["n"]) == {2} and set(table["successes"]) == {1}


def test_one_attack_and_one_defense_compare_nothing(make_trials) -> None:
    frame = pd.DataFrame(make_trials(1, 2)).assign(success=lambda f: f["success"].astype(bool))
    assert not compares_defenses(frame)
    assert len(defense_table(frame)) == 1


def test_defense_figure_written(study, write_job, tmp_path) -> None:
    frame = load_records(write_job(study)).frame
    paths = analysis.plot_defenses(frame, tmp_path / "figs")
    assert [p.name for p in paths] == ["fig_defenses.png", "fig_defenses.pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert "fig_defenses" in make_figures(frame, tmp_path / "all").written


def test_defense_figure_without_recall_draws_success_only(study, tmp_path, caplog) -> None:
    frame = pd.DataFrame(study).drop(columns="poison_recall")
    frame["success"] = frame["success"].astype("boolean")
    with caplog.at_level(logging.INFO, logger="analysis"):
        assert analysis.plot_defenses(frame, tmp_path) is not None
    assert "drawing success only" in caplog.text


def test_cli_writes_the_defenses_table(study, write_job, tmp_path, capsys) -> None:
    job = write_job(study, job="study")
    markdown = tmp_path / "docs" / "defenses.md"
    out = tmp_path / "out"
    argv = [str(job), "--defenses", str(markdown), "--out", str(out), "--report", "-q"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "attacks against defenses:" in printed and "recall_mean" in printed
    text = markdown.read_text()
    lines = text.splitlines()
    assert lines[0] == f"Generated by `frogs-analyze {' '.join(argv)}` from 35 ok trial records."
    assert lines[2] == (
        "| attack | defense | n | successes | success rate (95 % CI) | poison recall (n) | "
        "clean removed | median PSNR dB | max L-inf /255 | control successes |"
    )
    rows = {tuple(line.split(" | ")[:2]): line for line in lines[4:] if line.startswith("| ")}
    assert rows[("| feature_collision", "none")] == (
        "| feature_collision | none | 10 | 7 | 70 % (40-89) | 0.00 (10) | 0.0 | 30.0 | 8.0 | 1 |"
    )
    assert rows[("| feature_collision", "deep_knn")] == (
        "| feature_collision | deep_knn | 4 | 1 | 25 % (5-70) | 0.60 (3) | 27.5 | 32.0 | 9.0 | 1 |"
    )
    assert sum(line.startswith("| ") for line in lines) == 1 + 12
    assert "Wilson 95 % interval" in text
    table = pd.read_csv(out / "defenses.csv")
    assert len(table) == 12 and table["n"].sum() == 35
    assert (out / "fig_defenses.png").exists() and (out / "fig_defenses.pdf").exists()
    page = (out / "report.html").read_text()
    assert "Attacks against defenses" in page and "<th>recall_mean</th>" in page


def test_cli_defenses_of_a_single_attack(write_job, make_trials, tmp_path, capsys) -> None:
    markdown = tmp_path / "one.md"
    assert main([str(write_job(make_trials(1, 4))), "--defenses", str(markdown)]) == 0
    assert "attacks against defenses" not in capsys.readouterr().out
    assert "| feature_collision | none | 4 | 1 | 25 % (5-70) | 0.00 (4) |" in markdown.read_text()
