"""``frogs sweep-status``: counts per job folder from its config and records alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from frogs.store.status import main, sweep_status, totals


def make_job(root: Path, name: str, trials: int, offset: int, statuses: list[str]) -> Path:
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text(
        f"trials: {trials}\ntrial_offset: {offset}\ncache_dir: ${{oc.env:FROGS_CACHE,x}}\n"
    )
    lines = [
        json.dumps({"trial_id": f"{name}-{offset + i}", "trial_index": offset + i, "status": s})
        for i, s in enumerate(statuses)
    ]
    (job / "results.jsonl").write_text("".join(line + "\n" for line in lines))
    return job


def test_counts_ok_failed_and_not_started_per_job(tmp_path):
    make_job(tmp_path, "a=1", 3, 0, ["ok", "failed", "ok"])
    make_job(tmp_path, "a=2", 4, 3, ["ok"])
    (tmp_path / "a=3" / ".hydra").mkdir(parents=True)  # started, nothing recorded yet
    (tmp_path / "a=3" / ".hydra" / "config.yaml").write_text("trials: 2\n")
    rows = {row.job: row for row in sweep_status(tmp_path)}
    assert {k: (r.expected, r.ok, r.failed, r.not_started) for k, r in rows.items()} == {
        "a=1": (3, 2, 1, 0),
        "a=2": (4, 1, 0, 3),
        "a=3": (2, 0, 0, 2),
    }
    total = totals(list(rows.values()))
    assert (total.expected, total.ok, total.failed, total.not_started) == (9, 3, 1, 5)


def test_truncated_last_line_and_duplicates_are_tolerated(tmp_path):
    job = make_job(tmp_path, "nested/dir=T-shirt", 2, 0, ["ok", "ok"])
    with open(job / "results.jsonl", "a") as handle:
        handle.write(json.dumps({"trial_id": "nested/dir=T-shirt-0", "trial_index": 0}) + "\n")
        handle.write('{"trial_id": "x", "trial_in')  # a write cut short by a kill
    (row,) = sweep_status(tmp_path)
    assert row.job == "nested/dir=T-shirt"
    assert (row.ok, row.not_started, row.duplicates, row.malformed) == (2, 0, 1, 1)


def test_cli_prints_a_table_with_totals_and_exits_0(tmp_path, capsys):
    make_job(tmp_path, "a=1", 2, 0, ["ok"])
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["job", "trials", "ok", "failed", "not_started"]
    assert out[1].split() == ["a=1", "2", "1", "0", "1"]
    assert out[-1].split() == ["total", "2", "1", "0", "1"]
    assert main([str(tmp_path), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[-1]["job"] == "total" and rows[-1]["not_started"] == 1


def test_a_folder_without_jobs_is_one_clear_error(tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("frogs: error: no job folders")


def test_frogs_command_dispatches_to_it(tmp_path):
    make_job(tmp_path, "a=1", 1, 0, ["ok"])
    done = subprocess.run(
        [sys.executable, "-m", "frogs", "sweep-status", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].split() == ["total", "1", "1", "0", "0"]
