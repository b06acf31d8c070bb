"""A truncated, garbage or hostile cache entry is detected, logged and rebuilt; never used."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import re
from pathlib import Path

import pytest
import torch

from frogs.experiment.run import run
from frogs.store.cache import ArtifactCache
from tests.reliability.conftest import by_trial, read_records, tiny_settings

KIND, KEY = "models", "abc123"


class Builder:
    """Counts builds; returns fresh tensors."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> dict[str, torch.Tensor]:
        self.calls += 1
        return {"weight": torch.arange(6.0).reshape(2, 3)}


class Hostile:
    """A pickle that, if ever unpickled by full ``pickle``, writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "executed"))


def write_matching_meta(cache: ArtifactCache, payload: bytes) -> None:
    """What an attacker (or a careless copy) would do: make the checksum agree with the file."""
    _, meta_path, _ = cache.paths(KIND, KEY)
    meta_path.write_text(json.dumps({"sha256": hashlib.sha256(payload).hexdigest()}))


def truncate(cache: ArtifactCache) -> None:
    data_path, _, _ = cache.paths(KIND, KEY)
    data_path.write_bytes(data_path.read_bytes()[:100])


def garbage_with_matching_checksum(cache: ArtifactCache) -> None:
    data_path, _, _ = cache.paths(KIND, KEY)
    payload = os.urandom(512)
    data_path.write_bytes(payload)
    write_matching_meta(cache, payload)


def drop_checksum(cache: ArtifactCache) -> None:
    cache.paths(KIND, KEY)[1].unlink()


def garbage_checksum_file(cache: ArtifactCache) -> None:
    cache.paths(KIND, KEY)[1].write_text("{not json")


def drop_data(cache: ArtifactCache) -> None:
    cache.paths(KIND, KEY)[0].unlink()


@pytest.mark.parametrize(
    "corrupt",
    [truncate, garbage_with_matching_checksum, drop_checksum, garbage_checksum_file, drop_data],
)
def test_corrupt_entry_is_rebuilt_and_logged(tmp_path, caplog, corrupt):
    cache, build = ArtifactCache(tmp_path), Builder()
    cache.get_or_build(KIND, KEY, build)
    corrupt(cache)
    with caplog.at_level(logging.INFO, logger="frogs.store.cache"):
        tensors = cache.get_or_build(KIND, KEY, build)
    assert build.calls == 2
    assert torch.equal(tensors["weight"], Builder()()["weight"])
    assert f"cache miss {KIND}/{KEY}" in caplog.text
    assert "unusable" in caplog.text or "no checksum file" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="frogs.store.cache"):
        cache.get_or_build(KIND, KEY, build)  # the rebuilt entry verifies and is reused
    assert build.calls == 2 and f"cache hit {KIND}/{KEY}" in caplog.text


def test_hostile_pickle_in_the_cache_is_never_executed(tmp_path, caplog):
    cache, build = ArtifactCache(tmp_path), Builder()
    marker = tmp_path / "pwned"
    data_path, _, _ = cache.paths(KIND, KEY)
    data_path.parent.mkdir(parents=True)
    for payload in (pickle.dumps(Hostile(marker)), torch_saved(Hostile(marker))):
        data_path.write_bytes(payload)
        write_matching_meta(cache, payload)  # the checksum agrees: only weights_only stops it
        with caplog.at_level(logging.WARNING, logger="frogs.store.cache"):
            cache.get_or_build(KIND, KEY, build)
        assert not marker.exists(), "a pickled payload in the cache was executed"
        assert "unusable" in caplog.text
    assert build.calls == 2


def torch_saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save({"weight": obj}, buffer)
    return buffer.getvalue()


def used_entries(log_text: str, kind: str) -> list[str]:
    """The ``kind`` entries a job's log says it loaded or built (``cache hit|miss KIND/KEY``)."""
    return sorted(set(re.findall(rf"cache (?:hit|miss) {kind}/(\w+)", log_text)))


@pytest.mark.slow
def test_job_on_a_corrupted_cache_rebuilds_and_gets_the_same_records(tmp_path, cache, caplog):
    """Damage the real clean-model and feature entries the job used between two runs of it (the
    entries named by its own log: the cache copy holds other jobs' entries too)."""
    settings = tiny_settings("trials=2", f"cache_dir={cache}")
    with caplog.at_level(logging.INFO, logger="frogs"):
        run(settings, tmp_path / "intact")
    models, features = used_entries(caplog.text, "models"), used_entries(caplog.text, "features")
    assert (len(models), len(features)) == (1, 2)  # the clean model; its train and test features
    model_entry = cache / "models" / f"{models[0]}.pt"
    model_entry.write_bytes(model_entry.read_bytes()[: model_entry.stat().st_size // 2])
    for key in features:
        (cache / "features" / f"{key}.pt").write_bytes(os.urandom(256))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="frogs"):
        run(settings, tmp_path / "corrupted")
    assert caplog.text.count("unusable") == 3
    assert caplog.text.count("cache miss models/") == 1
    assert caplog.text.count("cache miss features/") == 2
    intact = by_trial(read_records(tmp_path / "intact" / "results.jsonl"))
    assert intact == by_trial(read_records(tmp_path / "corrupted" / "results.jsonl"))
