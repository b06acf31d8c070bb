"""The replication claims select the committed study records (``results/``): each claim counts
exactly the records of the study folders its command writes. The expected counts are read from
those ``results.jsonl`` files directly (JSON lines and folder names, no frogs or analysis code
between), so a claim filter that drifts from what frogs records fails here.

The report's layout, verdicts and every claim kind are tested on synthetic records
(``test_claims_as_data.py``, ``test_e2e_claims.py``); that today's code still composes these
studies' trial ids is ``tests/test_study_identity.py``; that real records keep the record
contract, ``tests/test_records.py``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from analysis.load import load_records
from analysis.replication import measure_claims

RESULTS = Path(__file__).resolve().parents[2] / "results"


def ok_records(pattern: str) -> list[dict]:
    """The ok records of the study folders matching ``pattern`` (a glob under results/)."""
    records = []
    for path in sorted(RESULTS.glob(f"{pattern}/results.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["status"] == "ok":
                records.append({**record, "_folder": path.parent.name})
    return records


def successes(records: list[dict]) -> int:
    return sum(bool(r["success"]) for r in records)


@pytest.fixture(scope="module")
def results() -> dict:
    if not any(RESULTS.glob("*/*/results.jsonl")):
        pytest.fail(f"no study records under {RESULTS}; they are committed with the repository")
    frame = load_records(RESULTS).frame
    return {result.claim.key: result for result in measure_claims(frame)}


def test_the_headline_transfer_claim_counts_the_linf8_budget_folders(results):
    headline = ok_records("replication_transfer/budget=linf8,*")
    assert len(headline) >= 20
    rate = results["1"].rate
    assert (rate.n, rate.successes) == (len(headline), successes(headline))
    directions = {f"{r['target_class']} -> {r['base_class']}" for r in headline}
    assert directions <= {d.split(":")[0] for d in results["1"].details}


def test_the_budget_claim_has_one_arm_per_budget_of_the_sweep(results):
    per_budget = Counter(
        r["_folder"].split(",")[0] for r in ok_records("replication_transfer/budget=*")
    )
    arms = results["2"].arms
    assert arms is not None
    assert sorted(arms["n"]) == sorted(per_budget.values())


def test_the_angle_claim_rests_on_the_headline_trials_and_the_end_to_end_ones(results):
    headline = ok_records("replication_transfer/budget=linf8,*")
    number = results["3"].number
    assert number.startswith("transfer ") and f"n={len(headline)})" in number
    assert "end-to-end" in number


def test_the_three_way_claim_counts_the_three_way_folders(results):
    three_way = ok_records("replication_3way/*")
    assert (results["4"].rate.n, results["4"].rate.successes) == (
        len(three_way),
        successes(three_way),
    )


def test_claim_5_counts_its_one_job_and_pairs_the_epochs10_run(results):
    job = ok_records("e2e_poison_count_cpu/attack.num_poisons=50,attack.opacity=0.3,*")
    paired = ok_records("e2e_bird_dog_epochs10/*")
    five = results["5"]
    assert (five.rate.n, five.rate.successes) == (len(job), successes(job))
    epochs = {r["victim.epochs"] for r in job}
    assert len(epochs) == 1 and epochs != {10}
    assert five.reductions and five.reductions[0].startswith(
        f"retraining epochs: {epochs.pop()} (as run) vs 10 on the same {len(paired)} targets"
    )
    assert five.paper_trial_s is not None and five.paper_trial_s > 0


def test_claim_7_has_one_arm_per_poison_count_and_opacity(results):
    per_job = Counter(r["_folder"] for r in ok_records("e2e_poison_count_cpu/*"))
    arms = results["7"].arms
    assert arms is not None
    assert sorted(arms["n"]) == sorted(per_job.values())
