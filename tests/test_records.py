"""The trial record contract (docs/records.md) and the append-only results file."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from frogs.config.settings import setting_columns, updated
from frogs.experiment.run import run
from frogs.measures.perceptibility import field_names
from frogs.store.identity import experiment_identity, trial_id
from frogs.store.records import PARAMETER_COLUMNS, RecordWriter, read_records
from tests.conftest import whole_records

CONTRACT = Path(__file__).resolve().parents[1] / "docs" / "records.md"


def contract_fields() -> set[str]:
    """Every backticked field name in the first column of the contract table."""
    fields = set()
    current = CONTRACT.read_text().split("## Older records")[0]  # not the legacy rename map
    for line in current.splitlines():
        first = line.split("|")[1] if line.startswith("| `") else ""
        if "<" not in first:  # derived families (attack.<field>, poison_<m>...) are checked apart
            fields.update(re.findall(r"`([a-z_0-9]+)`", first))
    return fields


def test_contract_lists_the_design_fields():
    design = {
        "schema",
        "trial_id",
        "status",
        "error",
        "scenario",
        "success",
        "target_pred",
        "target_base_prob",
        "target_true_prob_clean",
        "clean_acc_before",
        "clean_acc_after",
        "angular_deviation_deg",
        "feat_dist_before",
        "feat_dist_after",
        "clean_acc_control",
        "control_success",
        "control_drift_deg",
        "clean_train_acc",
        "clean_test_acc",
        "eps_255",
        "craft_s",
        "retrain_s",
        "eval_s",
        "frogs_version",
        "git_sha",
        "torch_version",
        "device",
        "host",
        "attack",
        "defense",
        "poisons_removed",
        "poison_recall",
        "beta",
        "seed",
    }
    assert design <= contract_fields()


def test_records_hold_every_contract_field(synthetic_settings, tmp_path):
    synthetic_settings = updated(
        synthetic_settings,
        {
            "save_poisons": True,
            "save_features": True,
            "feature_sample": 8,
            "attack.num_poisons": 3,
        },
    )
    records = run(synthetic_settings, tmp_path)
    assert len(records) == 2
    written = whole_records(tmp_path / "results.jsonl")
    assert len(written) == 2
    for record in written:
        derived = {
            **setting_columns("attack", synthetic_settings.attack),
            **setting_columns("victim", synthetic_settings.victim),
        }
        missing = (contract_fields() | set(field_names()) | set(derived)) - set(record)
        assert not missing, f"record lacks {sorted(missing)}"
        # the columns analysis groups success rates by are all written
        assert set(PARAMETER_COLUMNS) <= set(record), set(PARAMETER_COLUMNS) - set(record)
        assert record["attack.num_poisons"] == 3 and record["attack.eps"] == 8 / 255
        assert record["status"] == "ok" and isinstance(record["success"], bool)
        assert len(record["base_indices"]) == 3
        assert len(record["angular_deviation_per_epoch"]) == synthetic_settings.victim.epochs
        assert record["feat_dist_after"] < record["feat_dist_before"]
        poisons = torch.load(tmp_path / record["poisons_path"], weights_only=True)
        assert poisons["poisons"].shape == (3, 3, 16, 16)
        assert (tmp_path / record["poisons_path"]).with_suffix(".png").is_file()
        features = torch.load(tmp_path / record["features_path"], weights_only=True)
        assert features["clean"]["poisons"].shape[0] == 3
        assert features["poisoned"]["head_weight"].shape[0] == 2


def test_relaunch_skips_recorded_trials_and_redoes_missing(synthetic_settings, tmp_path):
    first = run(synthetic_settings, tmp_path)
    assert run(synthetic_settings, tmp_path) == []
    results = tmp_path / "results.jsonl"
    lines = results.read_text().splitlines()
    results.write_text(lines[0] + "\n")
    redone = run(synthetic_settings, tmp_path)
    assert [r["trial_id"] for r in redone] == [first[1]["trial_id"]]
    assert redone[0]["success"] == first[1]["success"]
    assert redone[0]["target_base_prob"] == first[1]["target_base_prob"]


def test_trial_id_is_stable_and_ignores_where_it_runs(synthetic_settings):
    identity = experiment_identity(synthetic_settings)
    synthetic_settings = updated(
        synthetic_settings,
        {
            "device": "cuda",
            "cache_dir": "/elsewhere",
            "progress": True,
            "save_poisons": not synthetic_settings.save_poisons,
            "save_features": not synthetic_settings.save_features,
        },
    )
    assert experiment_identity(synthetic_settings) == identity
    assert trial_id(identity, 0) != trial_id(identity, 1)
    synthetic_settings = updated(synthetic_settings, {"attack.opacity": 0.3})
    assert trial_id(experiment_identity(synthetic_settings), 0) != trial_id(identity, 0)


def test_one_reader_skips_and_counts_what_is_not_a_record(tmp_path, caplog):
    path = tmp_path / "results.jsonl"
    assert read_records(path).records == ()  # no file yet: no records
    path.write_bytes(
        b'{"trial_id": "a", "status": "ok"}\n\ngarbage\n[1]\n{"status": "ok"}\n'
        b'{"trial_id": "b", oops}\n\xff\xfe{}\n{"trial_id": "c"}\n{"trial_id": "d", "sta'
    )
    read = read_records(path)
    assert [r["trial_id"] for r in read.records] == ["a", "c"]
    assert read.malformed == (3, 4, 5, 6, 7, 9) and read.truncated
    assert caplog.text.count("skipped 6 malformed line(s)") == 1  # one warning per file


def test_writer_drops_a_partial_last_line(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"trial_id": "a"}\n{"trial_id": "b", "succ')
    writer = RecordWriter(path)
    assert writer.finished_ids() == {"a"}
    writer.append({"trial_id": "c"})
    assert path.read_text() == '{"trial_id": "a"}\n{"trial_id": "c"}\n'
