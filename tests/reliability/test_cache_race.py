"""Eight jobs started at once on an empty cache: every shared entry (the duplicate mask, the clean
model, the features, the clean head) is built once."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.reliability.conftest import TINY, by_trial, read_records, start_frogs

pytestmark = pytest.mark.slow

JOBS = 8


def test_cold_cache_is_built_once_by_eight_concurrent_jobs(tmp_path):
    cache = tmp_path / "cache"
    procs = [
        start_frogs(
            *TINY,
            "trials=2",
            f"cache_dir={cache}",
            f"hydra.run.dir={tmp_path / f'job{i}'}",
            log=tmp_path / f"job{i}.out",
        )
        for i in range(JOBS)
    ]
    codes = [proc.wait(timeout=600) for proc in procs]
    outputs = [(tmp_path / f"job{i}.out").read_text() for i in range(JOBS)]
    assert codes == [0] * JOBS, "\n".join(outputs)

    logs = [(tmp_path / f"job{i}" / "cli.log").read_text() for i in range(JOBS)]
    text = "\n".join(logs)
    assert text.count("cache miss models/") == 1
    assert text.count("pretraining") == 1
    assert text.count("cache miss features/") == 2  # the train and test splits, once each
    assert text.count("cache miss heads/") == 1  # the transfer victim's clean head (control)
    assert text.count("cache miss duplicates/") == 1  # the train/test duplicate mask
    assert text.count("cache miss poisons/") == 2  # each trial's poisons, crafted by one job
    assert text.count("cache hit models/") == JOBS - 1
    # A reader that met a half-written entry would have called it unusable and rebuilt it.
    assert "unusable" not in text and "no checksum file" not in text

    entries = sorted(cache.glob("*/*.pt"))
    assert len(entries) == 7
    for entry in entries:
        meta = json.loads(entry.with_suffix(".json").read_text())
        assert hashlib.sha256(entry.read_bytes()).hexdigest() == meta["sha256"]
    assert not list(cache.glob("*/.*.tmp")), "a temporary file was left behind"

    records = [by_trial(read_records(tmp_path / f"job{i}" / "results.jsonl")) for i in range(JOBS)]
    assert all(len(r) == 2 and r == records[0] for r in records)
