"""Finding and loading records: deduplication, malformed and failed lines, errors."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from analysis import NoRecordsError, load_records


def test_loads_all_jobs_below_the_directories(parser, write_job, make_trials, tmp_path) -> None:
    write_job(make_trials(1, 2), job="sweepA/0")
    write_job(make_trials(1, 3, start=2), job="sweepA/1")
    write_job(make_trials(0, 1, start=5), job="sweepB/multirun/0")
    result = load_records([tmp_path / "sweepA", tmp_path / "sweepB"])
    assert (result.n_read, result.n_trials, result.n_failed, result.n_malformed) == (6, 6, 0, 0)
    assert len(result.files) == 3
    assert result.frame["job_dir"].value_counts().to_dict() == {
        str((tmp_path / "sweepA/0").resolve()): 2,
        str((tmp_path / "sweepA/1").resolve()): 3,
        str((tmp_path / "sweepB/multirun/0").resolve()): 1,
    }


def test_dtypes_are_the_same_for_both_parsers(parser, write_job, make_trials, make_failed):
    job = write_job([*make_trials(1, 2), make_failed(make_trials(0, 1, start=2)[0])])
    frame = load_records(job).frame
    assert str(frame["success"].dtype) == "boolean"
    assert frame["success"].isna().tolist() == [False, False, True]
    assert isinstance(frame["finished_at"].dtype, pd.DatetimeTZDtype)
    assert frame["angular_deviation_per_epoch"].iloc[0] == [1.0, 2.0, 3.0]
    assert frame["task_classes"].iloc[0][:2] == ["airplane", "automobile"]
    assert frame["attack.num_poisons"].iloc[0] == 50


def test_malformed_lines_are_counted_and_skipped(parser, write_job, make_trials, caplog) -> None:
    records = make_trials(2, 3)
    tail = 'this is garbage\n[1, 2]\n{"trial_id": "x"}\n{"trial_id": "t9", "sta'
    job = write_job(records, tail=tail)
    with caplog.at_level(logging.WARNING):
        result = load_records(job)
    assert (result.n_read, result.n_trials, result.n_malformed) == (3, 3, 4)
    assert "malformed" in caplog.text or "skipped" in caplog.text


def test_valid_braces_but_invalid_json_falls_back(write_job, make_trials) -> None:
    job = write_job(make_trials(1, 2), tail='{"trial_id": "t7", oops}\n')
    result = load_records(job)
    assert (result.n_trials, result.n_malformed) == (2, 1)


def test_failed_trials_are_counted(parser, write_job, make_trials, make_failed) -> None:
    records = make_trials(1, 2) + [make_failed(r) for r in make_trials(0, 2, start=2)]
    result = load_records(write_job(records))
    assert (result.n_trials, result.n_ok, result.n_failed) == (4, 2, 2)


def test_duplicates_prefer_ok_over_failed(parser, write_job, record, make_failed) -> None:
    ok = record(1, finished_at="2026-01-01T00:00:00Z", success=True)
    late_failure = make_failed(record(1, finished_at="2026-01-02T00:00:00Z"))
    write_job([ok], job="first")
    write_job([late_failure, record(2)], job="relaunch")
    result = load_records(write_job([], job="empty").parent)
    assert (result.n_read, result.n_trials, result.n_duplicates, result.n_failed) == (3, 2, 1, 0)
    kept = result.frame.set_index("trial_id").loc["t000001"]
    assert kept["status"] == "ok" and kept["job_dir"].endswith("first")


def test_duplicates_keep_the_latest(parser, write_job, record, make_failed) -> None:
    older = record(1, finished_at="2026-01-01T00:00:00Z", success=False)
    newer = record(1, finished_at="2026-01-03T00:00:00+00:00", success=True)
    failed_old = make_failed(record(2, finished_at="2026-01-01T00:00:00Z"), error="old")
    failed_new = make_failed(record(2, finished_at="2026-01-02T00:00:00Z"), error="new")
    job = write_job([newer, older, failed_new, failed_old])
    frame = load_records(job).frame.set_index("trial_id")
    assert bool(frame.loc["t000001", "success"]) is True
    assert frame.loc["t000002", "error"] == "new"


def test_without_timestamps_the_last_read_wins(parser, write_job, record) -> None:
    job = write_job([record(1, finished_at=None, seed=1), record(1, finished_at=None, seed=2)])
    frame = load_records(job).frame
    assert frame["seed"].tolist() == [2]


def test_directory_without_records_is_a_clear_error(tmp_path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(NoRecordsError, match=r"no results.jsonl found under .*empty"):
        load_records(tmp_path / "empty")


def test_missing_directory_is_named(tmp_path) -> None:
    with pytest.raises(NoRecordsError, match=r"no such file or directory: .*missing"):
        load_records([tmp_path / "missing"])


def test_only_malformed_lines_is_an_error(write_job) -> None:
    job = write_job([], tail="{broken\n")
    with pytest.raises(NoRecordsError, match="no well-formed trial record"):
        load_records(job)


def test_old_records_get_eps_255(parser, write_job, old_record, record) -> None:
    records = [
        old_record(0, constraint="linf", eps=2 / 255),
        old_record(1),  # l2 without a radius
        record(2, eps=8 / 255, eps_255=8.0),
    ]
    frame = load_records(write_job(records)).frame.set_index("trial_id")
    assert frame.loc["t000000", "eps_255"] == 2.0
    assert pd.isna(frame.loc["t000001", "eps_255"])
    assert frame.loc["t000002", "eps_255"] == 8.0
    assert str(frame["control_success"].dtype) == "boolean"
    assert frame["control_success"].isna().tolist() == [True, True, False]
