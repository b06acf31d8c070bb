"""The frogs-analyze command line."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis.cli import main


@pytest.fixture
def sweep(write_job, make_trials, make_failed, tmp_path) -> Path:
    """Two jobs of a num_poisons sweep, one failed trial and a truncated last line."""
    write_job(make_trials(7, 10, attack__num_poisons=10), job="sweep/0")
    failures = [make_failed(r) for r in make_trials(0, 1, start=20, attack__num_poisons=50)]
    write_job(
        make_trials(2, 4, start=10, attack__num_poisons=50) + failures, job="sweep/1", tail='{"tr'
    )
    hydra = tmp_path / "sweep/0/.hydra"
    hydra.mkdir()
    (hydra / "config.yaml").write_text("attack:\n  num_poisons: 10\n  opacity: 0.3\nseed: 0\n")
    return tmp_path / "sweep"


def test_prints_counts_and_table(sweep, capsys) -> None:
    assert main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "read 15 records from 2 file(s): 15 trials (14 ok, 1 failed)" in out
    assert "1 malformed line(s) skipped" in out
    assert "0.700  0.397   0.892" in out
    header = out.splitlines()[2].split()
    assert header[-4:] == ["psnr_median", "linf255_max", "ssim_median", "control_successes"]
    assert "32.00       10.00      0.9500" in out  # the fixture's worst poison vs its base


def test_old_records_print_rates_without_perceptibility(write_job, old_record, capsys) -> None:
    job = write_job([old_record(i, success=i < 3, num_poisons=1 + i % 2) for i in range(6)])
    assert main([str(job)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[2].split() == [
        "attack.num_poisons", "n", "successes", "rate", "ci_low", "ci_high",
    ]  # fmt: skip  # schema 1 upgraded to the schema-3 names


def test_writes_table_figures_and_report(sweep, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert (
        main([str(sweep), "--by", "attack.num_poisons", "--out", str(out), "--report", "-q"]) == 0
    )
    table = pd.read_csv(out / "success.csv")
    assert list(table.columns) == [
        "attack.num_poisons", "n", "successes", "rate", "ci_low", "ci_high",
        "psnr_median", "linf255_max", "ssim_median", "control_successes",
    ]  # fmt: skip
    assert table.values.tolist()[0][:4] == [10, 10, 7, 0.7]
    assert table.values.tolist()[0][6:] == [32.0, 10.0, 0.95, 0]
    assert (out / "fig_poison_count.png").exists() and (out / "fig_poison_count.pdf").exists()
    if pytest.importorskip("pyarrow"):
        assert pd.read_parquet(out / "success.parquet").equals(table)
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 3
    assert "attack.num_poisons" in page and "abc1234" in page
    assert "fig_poison_grid" in page  # listed as skipped, with the reason
    assert "Attacks against defenses" not in page  # one attack, one defense
    assert not (out / "defenses.csv").exists() and not (out / "fig_defenses.png").exists()
    assert "<th>psnr_median</th>" in page and "<td>32.00</td>" in page
    assert "worst (most visible) poison of each trial" in page and "median across" in page
    assert "control_successes</code> counts" in page


def test_report_without_hydra_config_lists_parameters(write_job, make_trials, tmp_path) -> None:
    job = write_job(make_trials(1, 2))
    assert main([str(job), "--out", str(tmp_path / "out"), "--report", "--no-figures"]) == 0
    page = (tmp_path / "out/report.html").read_text()
    assert "record parameter columns" in page and "Figures were not drawn" in page
    assert "eps_255" in page and "pretrain_schedule" in page and "ffffffff" in page


def test_report_of_old_records_has_no_perceptibility_note(write_job, old_record, tmp_path):
    job = write_job([old_record(i, success=i == 0) for i in range(2)])
    assert main([str(job), "--out", str(tmp_path / "out"), "--report", "--no-figures"]) == 0
    page = (tmp_path / "out/report.html").read_text()
    assert "Success rates" in page and "psnr_median" not in page and "worst" not in page


def test_empty_directory_is_one_error_line(tmp_path, capsys) -> None:
    (tmp_path / "nothing").mkdir()
    assert main([str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"frogs-analyze: error: no results.jsonl found under {tmp_path / 'nothing'}"]


def test_unknown_by_column_lists_available(sweep, capsys) -> None:
    assert main([str(sweep), "--by", "poisons"]) == 2
    err = capsys.readouterr().err
    assert "unknown column(s) poisons; available:" in err and "attack.num_poisons" in err
    assert "Traceback" not in err


def test_each_call_logs_to_its_own_stderr(sweep, capsys, monkeypatch) -> None:
    """A second call in the same process (a test after another) warns on its own stderr, not on
    a stream the first call was given and that is closed since."""
    gone = io.StringIO()
    monkeypatch.setattr(sys, "stderr", gone)
    main([str(sweep)])
    gone.close()
    monkeypatch.undo()
    capsys.readouterr()
    assert main([str(sweep)]) == 0
    err = capsys.readouterr().err
    assert "Logging error" not in err and "skipped 1 malformed line(s)" in err


def test_schema2_by_column_names_its_schema3_name(sweep, capsys) -> None:
    assert main([str(sweep), "--by", "num_poisons", "retrain_epochs"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "skipped 1 malformed line(s)" in err[0]  # the fixture's last line
    assert err[1].startswith(
        "frogs-analyze: error: unknown column(s) num_poisons, retrain_epochs (num_poisons is "
        "now attack.num_poisons; retrain_epochs is now victim.epochs); available:"
    )


def test_report_needs_out(sweep, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main([str(sweep), "--report"])
    assert exc.value.code == 2
    assert "--report needs --out" in capsys.readouterr().err


def test_python_dash_m(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "analysis", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("frogs-analyze: error: no results.jsonl found")
    assert "Traceback" not in result.stderr
