"""The replication claims select the records real (tiny) frogs sweeps write on CIFAR-10: the
transfer analog at two budgets and an end-to-end run with its paired epochs-10 comparison.

The report's layout, verdicts and every claim kind are tested on synthetic records
(``test_claims_as_data.py``, ``test_e2e_claims.py``); this module checks only that the claims'
column filters match what frogs really records. The noise floor, 3-way and outlier runs differ
from these only in columns every record carries (``attack.optimize``, ``task_classes``,
``target_selection``: the contract that ``tests/test_records.py`` checks real records
against)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.claims import Verdict
from analysis.load import load_records
from analysis.replication import measure_claims

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
_TINY = ["debug=smoke", "progress=false", "save_poisons=false", "attack.iters=3"]
_E2E = [
    "victim=end_to_end",
    "attack=feature_collision_e2e",
    "attack.iters=2",
    "attack.num_poisons=50",
    "attack.opacity=0.3",
    "dataset.test_per_class=20",
]


def _frogs(tmp: Path, data: Path, name: str, *overrides: str, sweep: str | None = None) -> None:
    command = [sys.executable, "-m", "frogs", "-m"]
    if sweep:
        command[-1:] = ["--config-dir", str(ROOT / "sweeps"), "--config-name", sweep]
    command += [*_TINY, *overrides, f"cache_dir={tmp / 'cache'}"]
    command.append(f"hydra.sweep.dir={tmp / 'records' / name}")
    env = {**os.environ, "FROGS_DATA": str(data)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def results(tmp_path_factory, cifar10_root) -> dict:
    tmp = tmp_path_factory.mktemp("replication")
    analog = [
        "model.pretrain.epochs=1",
        "model.pretrain.train_per_class=100",
        "trials=2",
        "trial_offset=0",
    ]
    _frogs(
        tmp, cifar10_root, "transfer", *analog, "pair=bird_dog,dog_bird", "budget=linf2,linf8",
        sweep="replication_transfer",
    )  # fmt: skip
    _frogs(tmp, cifar10_root, "e2e", "dataset=cifar10", *_E2E, "victim.epochs=2,10", "trials=2")
    frame = load_records(tmp / "records").frame
    return {result.claim.key: result for result in measure_claims(frame)}


def test_the_transfer_claims_select_the_real_transfer_records(results):
    # 2 targets x 2 directions at each of 2 budgets
    assert results["2"].arms is not None and list(results["2"].arms["n"]) == [4, 4]
    assert results["1"].rate.n == 4  # the headline budget's trials
    assert {"bird -> dog", "dog -> bird"} <= {d.split(":")[0] for d in results["1"].details}
    assert results["3"].number.startswith("transfer ")
    assert results["1"].verdict is not Verdict.NOT_RUN


def test_the_end_to_end_claims_select_the_real_end_to_end_records(results):
    five = results["5"]
    assert five.rate.n == 2  # the epochs-10 runs are the paired comparison, not counted
    assert five.reductions and five.reductions[0].startswith(
        "retraining epochs: 2 (as run) vs 10 on the same 2 targets"
    )
    assert "end-to-end" in results["3"].number
    assert results["7"].number == "one poison count only (50)"
    assert five.paper_trial_s is not None and five.paper_trial_s > 0
