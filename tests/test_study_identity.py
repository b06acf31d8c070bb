"""The committed study records stay reachable: every trial id under ``results/`` is what today's
code gives the study's command, so relaunching a finished study runs nothing (a change that moves
ids ships a migration: ``frogs migrate-ids``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from frogs.config.compose import compose_settings
from frogs.store.identity import experiment_identity, trial_id

REPO = Path(__file__).resolve().parent.parent
SWEEPS = REPO / "sweeps"
# study folder under results/ -> the sweep config its jobs were composed from (the file
# `frogs migrate-ids results --config-dir sweeps --studies results/studies.json` reads too)
STUDY_SWEEPS = json.loads((REPO / "results" / "studies.json").read_text())
JOBS = sorted(
    path.parent
    for study in STUDY_SWEEPS
    for path in (REPO / "results" / study).glob("*/results.jsonl")
)


def test_every_committed_study_folder_is_checked():
    studies = {
        path.parent.parent.name
        for pattern in ("e2e*/*/results.jsonl", "replication*/*/results.jsonl")
        for path in (REPO / "results").glob(pattern)
    }
    assert studies <= set(STUDY_SWEEPS), f"add {studies - set(STUDY_SWEEPS)} to studies.json"
    assert JOBS, "no committed study records found"


@pytest.mark.parametrize("job", JOBS, ids=[f"{j.parent.name}/{j.name}" for j in JOBS])
def test_committed_trial_ids_are_what_the_study_command_composes(job):
    # the folder name is Hydra's override_dirname: the job's overrides, comma-separated (a list
    # value such as dataset.task_classes=[bird,dog,cat] keeps its own commas)
    settings = compose_settings(
        re.split(r",(?![^\[]*\])", job.name),
        config_dir=SWEEPS,
        config_name=STUDY_SWEEPS[job.parent.name],
    )
    identity = experiment_identity(settings)
    records = [json.loads(line) for line in (job / "results.jsonl").read_text().splitlines()]
    assert records
    for record in records:
        index = record["trial_index"]
        assert trial_id(identity, index) == record["trial_id"], f"trial {index}"
